//! The operating-system layer: the only module that makes system calls or calls into the C
//! library for the OS's services (memory, time, files, threads, process hooks).
//!
//! Everything here is safe to call from inside malloc: no allocation, no stdio, no libc lock
//! (the few calls that may take one, `pthread_atfork`, `atexit`, `pthread_key_create` and file
//! opening, are made from the constructor or outside any heap lock, and say so). Calls made on a
//! `free` path keep `errno` as it was, because `free` must never change it.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::PAGE;
use crate::pagemap::PageMap;
use crate::source::{Region, Source};

mod signals;

pub use signals::{call_action, fault_address, on_fault, on_signal, restore_action, FaultHandler, SignalAction};

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

/// A monotonic clock in milliseconds; `coarse` reads the cheaper, tick-grained clock (both are
/// read in the vDSO, without a system call).
pub fn clock_ms(coarse: bool) -> u64 {
    let id = if coarse { libc::CLOCK_MONOTONIC_COARSE } else { libc::CLOCK_MONOTONIC };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter.
    keep_errno(|| unsafe { libc::clock_gettime(id, &mut ts) });
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

// ------------------------------------------------------------------------------------------------
// Files (the profile and the statistics' descriptor)

/// Opens (creating) the file at the NUL-terminated `path` for appending, close-on-exec.
pub fn open_append(path: &[u8]) -> Option<i32> {
    if !path.contains(&0) {
        return None;
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: path is NUL-terminated.
    let fd = keep_errno(|| unsafe { libc::open(path.as_ptr().cast(), flags, 0o644 as libc::c_uint) });
    (fd >= 0).then_some(fd)
}

/// Opens the file at `path` for reading, close-on-exec.
pub fn open_read(path: &core::ffi::CStr) -> Option<i32> {
    // SAFETY: a NUL-terminated path.
    let fd = keep_errno(|| unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) });
    (fd >= 0).then_some(fd)
}

/// Takes an exclusive advisory lock on `fd` without waiting and empties the file; false if
/// another process holds the lock (or either step fails).
pub fn lock_and_truncate(fd: i32) -> bool {
    // SAFETY: plain calls on a descriptor; a bad one only fails.
    keep_errno(|| unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 && libc::ftruncate(fd, 0) == 0 })
}

/// Closes `fd`.
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor we opened.
    keep_errno(|| unsafe { libc::close(fd) });
}

/// Reads up to `buf.len()` bytes of `fd` from `offset`; the count read, 0 on end or error.
pub fn read_at(fd: i32, buf: &mut [u8], offset: usize) -> usize {
    // SAFETY: reads into a buffer of its length.
    let n = keep_errno(|| unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) });
    n.max(0) as usize
}

/// Reads up to `buf.len()` bytes of `fd` at its current position; the count read, 0 on end or
/// error (files of /proc are read this way: they are generated as they are read).
pub fn read(fd: i32, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: reads into a buffer of its length.
        let n = keep_errno(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) });
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return n.max(0) as usize;
    }
}

/// The target of the symbolic link at `path`, into `buf` (not NUL-terminated); its length.
pub fn read_link(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: the buffer is writable for its length; readlink does not NUL-terminate.
    let n = keep_errno(|| unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) });
    n.max(0) as usize
}

/// A close-on-exec duplicate of `fd`, numbered 3 or above.
pub fn dup_cloexec(fd: i32) -> Option<i32> {
    // SAFETY: duplicating a descriptor has no memory effects.
    let d = keep_errno(|| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) });
    (d >= 0).then_some(d)
}

// ------------------------------------------------------------------------------------------------
// The process: environment, fork and exit hooks

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

/// Registers fork handlers (`pthread_atfork`; it may allocate: from the constructor only).
pub fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: the handlers are plain functions with the signature pthread expects.
    keep_errno(|| unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) });
}

/// Registers an exit handler (`atexit` takes a libc lock: from the constructor only).
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: a plain function with the expected signature.
    keep_errno(|| unsafe { libc::atexit(f) });
}

/// This thread's kernel id.
pub fn thread_id() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    keep_errno(|| unsafe { libc::syscall(libc::SYS_gettid) }) as u64
}

/// Reserves `len` bytes of address space for guarded blocks: inaccessible, no memory.
pub fn reserve_guarded(len: usize) -> Option<usize> {
    keep_errno(|| reserve(len))
}

/// Makes `[addr, addr + len)` of a reservation readable and writable (zero-filled on first use).
pub fn make_accessible(addr: usize, len: usize) -> bool {
    // SAFETY: the caller owns the range, part of a reservation of its own.
    keep_errno(|| unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) } == 0)
}

/// Makes `[addr, addr + len)` of our own memory inaccessible again, and gives its pages back:
/// a later access faults, a later `make_accessible` finds zeros.
pub fn make_inaccessible(addr: usize, len: usize) -> bool {
    keep_errno(|| reserve_at(addr, len))
}

/// Maps `len` bytes of zeroed memory for the allocator's own bookkeeping.
pub fn map_private(len: usize) -> Option<usize> {
    keep_errno(|| mmap_anon(0, len))
}

// ------------------------------------------------------------------------------------------------
// Call stacks: libgcc's unwinder
//
// It walks the DWARF call-frame information every ELF object carries in `.eh_frame` (for C++
// exceptions and Rust panics), so it works in programs built without frame pointers. libgcc 12
// with glibc 2.35 or later finds a pc's object through `_dl_find_object`, which takes no lock and
// does not allocate; the first walk binds the symbols and sets up its tables, so the profiler
// makes one from the constructor (`profile::start`).

/// What `_Unwind_Backtrace` calls for each frame; a non-zero result stops the walk.
type TraceFn = extern "C" fn(ctx: *mut core::ffi::c_void, arg: *mut core::ffi::c_void) -> i32;

#[link(name = "gcc_s")]
extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut core::ffi::c_void) -> i32;
    fn _Unwind_GetIP(ctx: *mut core::ffi::c_void) -> usize;
}

/// What the pointers of a frame description entry may be relative to (libgcc's
/// `struct dwarf_eh_bases`): the object's text and data, and the function the entry describes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EhBases {
    pub text: usize,
    pub data: usize,
    pub func: usize,
}

#[link(name = "gcc_s")]
extern "C" {
    fn _Unwind_Find_FDE(pc: *const core::ffi::c_void, bases: *mut EhBases) -> *const u8;
}

/// The frame description entry (in some object's `.eh_frame`) of the code at `pc`, found the
/// way libgcc's own walk finds it, with the bases its pointers are relative to.
pub fn find_fde(pc: usize) -> Option<(*const u8, EhBases)> {
    let mut bases = EhBases::default();
    // SAFETY: `bases` is a valid out-parameter; the lookup only reads the loader's tables.
    let fde = keep_errno(|| unsafe { _Unwind_Find_FDE(pc as *const core::ffi::c_void, &mut bases) });
    (!fde.is_null()).then_some((fde, bases))
}

/// How many times an object may have been unloaded since the program started (the loader's
/// count): while it stays the same, code seen at an address is still the same code. Read from
/// the first object `dl_iterate_phdr` reports; it takes the loader's recursive list lock for
/// that moment, which the loader holds only around list changes, never while allocating.
pub fn objects_removed() -> u64 {
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, size: usize, data: *mut core::ffi::c_void) -> i32 {
        if size >= core::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8 {
            // SAFETY: the loader passes a valid entry of `size` bytes, and `data` is the u64
            // `objects_removed` passed.
            unsafe { *(data as *mut u64) = (*info).dlpi_subs };
        }
        1
    }
    let mut subs = 0u64;
    // SAFETY: the callback matches what dl_iterate_phdr calls and `subs` outlives the call.
    keep_errno(|| unsafe { libc::dl_iterate_phdr(Some(first), (&mut subs as *mut u64).cast()) });
    subs
}

/// The caller's pc, rsp and rbp at this point of its code (inlined, so they are the caller's
/// own): where a stack walk starts.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn frame_registers() -> (usize, usize, usize) {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads this instruction's address and two registers; touches no memory.
    unsafe {
        core::arch::asm!("lea {pc}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp", pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp, options(nomem, nostack, preserves_flags));
    }
    (pc, sp, bp)
}

/// Where a walk stores its frames.
struct Frames<'a> {
    out: &'a mut [usize],
    len: usize,
}

extern "C" fn one_frame(ctx: *mut core::ffi::c_void, arg: *mut core::ffi::c_void) -> i32 {
    // SAFETY: `arg` is the `Frames` that `backtrace` passed, alive for the whole walk; `ctx` is
    // the unwinder's context for this frame.
    let (frames, ip) = unsafe { (&mut *(arg as *mut Frames), _Unwind_GetIP(ctx)) };
    if ip == 0 || frames.len == frames.out.len() {
        return 1;
    }
    frames.out[frames.len] = ip;
    frames.len += 1;
    0
}

/// Stores the calling thread's return addresses, innermost first, into `out`; how many. Safe
/// inside malloc: the walk allocates nothing and takes no lock (see above).
#[inline(never)]
pub fn backtrace(out: &mut [usize]) -> usize {
    let mut frames = Frames { out, len: 0 };
    // SAFETY: the callback matches what the unwinder calls and `frames` outlives the walk.
    keep_errno(|| unsafe { _Unwind_Backtrace(one_frame, (&mut frames as *mut Frames).cast()) });
    frames.len
}

// ------------------------------------------------------------------------------------------------
// Threads: the cache slot and the exit hook

/// Whether this target has the thread slot below (its initial-exec TLS is written in assembly).
pub const HAS_THREAD_SLOT: bool = cfg!(target_arch = "x86_64");

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".section .tbss,\"awT\",@nobits",
    ".p2align 3",
    // Global but hidden: every codegen unit that inlines `thread_slot` links to this one word.
    ".globl my_alloc_tcache_slot",
    ".hidden my_alloc_tcache_slot",
    ".type my_alloc_tcache_slot, @object",
    ".size my_alloc_tcache_slot, 8",
    "my_alloc_tcache_slot:",
    ".zero 8",
    ".previous",
);

/// Address of this thread's slot: one word of initial-exec TLS, zero in every new thread.
/// Rust's own thread-locals in a shared library go through `__tls_get_addr`, which may call
/// malloc (and so recurse) after another library with TLS is dlopened; initial-exec TLS is a fixed
/// offset from the thread pointer and never calls anything. Null where `HAS_THREAD_SLOT` is false.
#[inline(always)]
pub fn thread_slot() -> *mut usize {
    #[cfg(target_arch = "x86_64")]
    {
        let p: usize;
        // SAFETY: reads the thread pointer (fs:0) and adds the slot's initial-exec offset from
        // the GOT; this touches no memory other than the TCB self-pointer and the GOT entry.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + my_alloc_tcache_slot@GOTTPOFF]",
                p = out(reg) p,
                options(nostack, readonly, pure),
            );
        }
        p as *mut usize
    }
    #[cfg(not(target_arch = "x86_64"))]
    core::ptr::null_mut()
}

/// A thread-exit hook: a pthread key whose destructor runs with the value a thread set. `None`
/// if no key is left (`pthread_key_create` may allocate: never under a heap lock).
pub fn thread_key_create(destructor: unsafe extern "C" fn(*mut core::ffi::c_void)) -> Option<u32> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key; the destructor has the signature pthread expects.
    let ok = keep_errno(|| unsafe { libc::pthread_key_create(&mut key, Some(destructor)) }) == 0;
    ok.then_some(key)
}

/// Sets this thread's value of `key` (a high key may make pthread allocate its storage).
pub fn thread_key_set(key: u32, value: *mut core::ffi::c_void) {
    // SAFETY: the key exists; the value is only handed back to the destructor.
    keep_errno(|| unsafe { libc::pthread_setspecific(key, value) });
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

/// The number of CPUs this process may run on (its affinity mask), at least 1.
pub fn cpu_count() -> usize {
    let mut mask = [0u64; 16];
    // SAFETY: the kernel writes at most the mask's size into it.
    let n = keep_errno(|| unsafe { libc::syscall(libc::SYS_sched_getaffinity, 0, core::mem::size_of_val(&mask), mask.as_mut_ptr()) });
    if n <= 0 {
        return 1;
    }
    let words = (n as usize / 8).min(mask.len());
    (mask[..words].iter().map(|w| w.count_ones() as usize).sum::<usize>()).max(1)
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

/// Reserves `len` bytes of address space: inaccessible, and no memory until made accessible.
fn reserve(len: usize) -> Option<usize> {
    // SAFETY: a new inaccessible mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { None } else { Some(p as usize) }
}

/// Turns `[addr, addr + len)` of our own memory back into reserved address space: its pages go
/// back to the OS, and the range stays ours.
fn reserve_at(addr: usize, len: usize) -> bool {
    // SAFETY: the caller owns the range; MAP_FIXED replaces exactly it.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p as usize == addr
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

/// Cleared for good the first time `sbrk` fails (the break hit a limit or another mapping).
static BRK_USABLE: AtomicBool = AtomicBool::new(true);

/// Bytes every heap of the process has grown by so far (never lowered): the clock of the
/// process-wide resident budget, read on slow paths.
static GROWN: AtomicUsize = AtomicUsize::new(0);

/// Bytes every heap of the process has grown by so far.
#[inline]
pub fn grown_bytes() -> usize {
    GROWN.load(Ordering::Relaxed)
}

/// The page map of every heap of the process.
static PAGES: PageMap = PageMap::new();

/// Address space a heap without the program break reserves at a time (no memory until used).
const RESERVATION: usize = 256 << 20;

/// The process's memory, for one heap: the program break first (for the main heap), anonymous
/// mappings once the break cannot move. The other heaps reserve address space and grow through
/// it, so that their segments extend instead of multiplying (mappings are placed top-down, so the
/// space after a heap's last one is rarely free).
pub struct OsSource {
    use_brk: bool,
    /// The unused part of the current reservation, `[reserved, reserved_end)` (heaps that do not
    /// use the break; changed under their heap lock).
    reserved: AtomicUsize,
    reserved_end: AtomicUsize,
}

impl OsSource {
    /// A source that starts with the program break (the main heap's).
    pub const fn new() -> Self {
        OsSource { use_brk: true, reserved: AtomicUsize::new(0), reserved_end: AtomicUsize::new(0) }
    }

    /// A source of anonymous mappings only (the other heaps': one program break is enough).
    pub const fn mapped() -> Self {
        OsSource { use_brk: false, reserved: AtomicUsize::new(0), reserved_end: AtomicUsize::new(0) }
    }

    /// `len` bytes at the start of the reservation's unused part (a new reservation when it is
    /// too short), made accessible.
    fn grow_reserved(&self, len: usize) -> Option<usize> {
        let (mut at, mut end) = (self.reserved.load(Ordering::Relaxed), self.reserved_end.load(Ordering::Relaxed));
        if end - at < len {
            let size = len.max(RESERVATION);
            at = reserve(size)?;
            end = at + size;
        }
        // SAFETY: [at, at + len) is part of our own reservation, which nothing else uses.
        if unsafe { libc::mprotect(at as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
            return None;
        }
        self.reserved.store(at + len, Ordering::Relaxed);
        self.reserved_end.store(end, Ordering::Relaxed);
        Some(at)
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
        GROWN.fetch_add(len, Ordering::Relaxed);
        keep_errno(|| {
            if self.use_brk && BRK_USABLE.load(Ordering::Relaxed) {
                if let Some(r) = self.grow_brk(len) {
                    return Some(r);
                }
                BRK_USABLE.store(false, Ordering::Relaxed);
            }
            // Without the break too (it hit a limit, or another user moved it), through a
            // reservation: its growths are contiguous, so the heap keeps one growable segment
            // (and the free path its range test) instead of one segment per growth.
            if let Some(start) = self.grow_reserved(len) {
                return Some(Region { start, len, from_brk: false });
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
            } else if end == self.reserved.load(Ordering::Relaxed) {
                // The reservation's used part ends here: give the pages back and keep the address
                // space reserved, for the next growth.
                if reserve_at(end - len, len) {
                    self.reserved.store(end - len, Ordering::Relaxed);
                    return true;
                }
                false
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
        clock_ms(true)
    }

    fn pages(&self) -> &PageMap {
        &PAGES
    }

    fn purge(&self, addr: usize, len: usize) {
        keep_errno(|| {
            // SAFETY: the pages are ours and hold nothing anyone needs.
            unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        })
    }
}
