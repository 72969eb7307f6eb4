//! The fault handler for guarded pages, and the reports of misuse of guarded blocks.
//!
//! The handler is installed for SIGSEGV and SIGBUS by the constructor (or by the first guarded
//! block, if that comes first), keeping the action it displaces. A fault in the pool is ours: one block of lines on stderr
//! (written with write(2)), then abort. Any other fault goes to the program's own handler if it
//! had one; otherwise the default action is put back and the faulting instruction runs again, so
//! the process dies of its fault exactly as it would have without us.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::diag::Line;
use crate::os::{self, SignalAction};
use crate::unwind::maps;

use super::pool::{self, Place, Slot, Stack, State};

/// The actions our handler displaced, one per signal; written once, before the handler is in.
struct Displaced(UnsafeCell<[Option<SignalAction>; 2]>);
// SAFETY: written only by `ensure_installed` under `INSTALLING`, before the handler that reads it
// can run.
unsafe impl Sync for Displaced {}

static DISPLACED: Displaced = Displaced(UnsafeCell::new([None, None]));
static INSTALLING: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

const SIGNALS: [i32; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the handler, once.
pub fn ensure_installed() {
    if INSTALLED.load(Ordering::Acquire) || INSTALLING.swap(true, Ordering::AcqRel) {
        return;
    }
    for (k, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: a zeroed sigaction is a valid one; nothing reads DISPLACED[k] before the
        // handler for `sig` is installed, just below.
        let mut old: SignalAction = unsafe { core::mem::zeroed() };
        if os::on_fault(sig, on_fault, &mut old) {
            // SAFETY: as above: only this thread writes, and before the handler can read.
            unsafe { (*DISPLACED.0.get())[k] = Some(old) };
        }
    }
    INSTALLED.store(true, Ordering::Release);
}

extern "C" fn on_fault(sig: i32, info: *mut libc::siginfo_t, ctx: *mut core::ffi::c_void) {
    // SAFETY: the kernel called this SA_SIGINFO handler for a fault, with these arguments.
    let (addr, write) = unsafe { os::fault_address(info, ctx) };
    if pool::count() != 0 && pool::contains(addr) {
        access(addr, write);
    }
    let k = if sig == libc::SIGSEGV { 0 } else { 1 };
    // SAFETY: DISPLACED was written before this handler was installed, and never since.
    let Some(old) = (unsafe { &(*DISPLACED.0.get())[k] }) else { return };
    // SAFETY: the arguments are the kernel's for this signal.
    if !unsafe { os::call_action(old, sig, info, ctx) } {
        // Not a handler: the default action (or ignore, which the kernel overrides for a fault)
        // takes over when the instruction faults again.
        os::restore_action(sig, old);
    }
}

/// A fault at `addr` in the pool: what the program did, to which block.
fn access(addr: usize, write: Option<bool>) -> ! {
    let how = match write {
        Some(true) => " (write)",
        Some(false) => " (read)",
        None => "",
    };
    let mut l = Line::new();
    let block = match pool::place(addr) {
        Place::Data(i) if pool::slot(i).state == State::Freed => {
            let s = pool::slot(i);
            l.str("my_alloc: use after free").str(how).str(" at ").hex(addr as u64);
            offset_into(&mut l, addr, s);
            Some(i)
        }
        Place::Data(i) if pool::slot(i).state == State::Live => {
            // An inaccessible page of the live block's own slot.
            overrun(&mut l, how, addr, i, addr >= pool::slot(i).user);
            Some(i)
        }
        Place::Data(_) => {
            l.str("my_alloc: invalid access").str(how).str(" at ").hex(addr as u64).str(": a guarded page that holds no block");
            None
        }
        Place::GuardBefore(i) => match nearest(addr, i) {
            Some((j, after)) => {
                overrun(&mut l, how, addr, j, after);
                Some(j)
            }
            None => {
                l.str("my_alloc: invalid access").str(how).str(" at ").hex(addr as u64).str(": a guard page next to no block");
                None
            }
        },
    };
    l.write_to(2);
    if let Some(i) = block {
        stacks_of(pool::slot(i));
    }
    print_stack("  the access", &Stack::here());
    os::abort()
}

/// The first line for an access at `addr` past the end of slot `i`'s block (`after`) or before
/// its start.
fn overrun(l: &mut Line, how: &str, addr: usize, i: usize, after: bool) {
    let s = pool::slot(i);
    let freed = s.state == State::Freed;
    let what = match (after, freed) {
        (true, false) => "heap buffer overflow",
        (false, false) => "heap buffer underflow",
        (true, true) => "use after free (past the end of a freed block)",
        (false, true) => "use after free (before the start of a freed block)",
    };
    l.str("my_alloc: ").str(what).str(how).str(" at ").hex(addr as u64).str(": ");
    if after {
        bytes(l, addr.saturating_sub(s.user + s.size)).str(" after the ");
    } else {
        bytes(l, s.user.saturating_sub(addr)).str(" before the ");
    }
    l.dec(s.size as u64).str("-byte block at ").hex(s.user as u64);
}

/// `N bytes` (or `1 byte`).
fn bytes(l: &mut Line, n: usize) -> &mut Line {
    l.dec(n as u64).str(if n == 1 { " byte" } else { " bytes" })
}

/// `: offset N into the freed S-byte block at P`.
fn offset_into(l: &mut Line, addr: usize, s: &Slot) {
    if addr >= s.user {
        l.str(": offset ").dec((addr - s.user) as u64).str(" into the freed ");
    } else {
        l.str(": ");
        bytes(l, s.user - addr).str(" before the freed ");
    }
    l.dec(s.size as u64).str("-byte block at ").hex(s.user as u64);
}

/// The block a fault in the guard page before slot `i` is about: the one ending before it (an
/// overflow, `true`) or the one starting after it (an underflow), whichever was in use and is
/// nearer; live blocks before freed ones.
fn nearest(addr: usize, i: usize) -> Option<(usize, bool)> {
    let left = i.checked_sub(1).filter(|&j| pool::slot(j).state != State::Unused);
    let right = Some(i).filter(|&j| j < pool::count() && pool::slot(j).state != State::Unused);
    let rank = |j: usize, after: bool| {
        let s = pool::slot(j);
        let distance = if after { addr.saturating_sub(s.user + s.size) } else { s.user.saturating_sub(addr) };
        ((s.state != State::Live) as usize, distance)
    };
    match (left, right) {
        (Some(a), Some(b)) => Some(if rank(a, true) <= rank(b, false) { (a, true) } else { (b, false) }),
        (Some(a), None) => Some((a, true)),
        (None, Some(b)) => Some((b, false)),
        (None, None) => None,
    }
}

fn stacks_of(s: &Slot) {
    print_stack("  allocated", &s.alloc);
    if s.state == State::Freed {
        print_stack("  freed", &s.free);
    }
}

/// `<what> by thread T:` then one line per frame: `#i 0xPC path+0xOFFSET` (offset in the file,
/// for addr2line), or the bare address outside any file.
fn print_stack(what: &str, st: &Stack) {
    let mut l = Line::new();
    l.str("my_alloc: ").str(what).str(" by thread ").dec(st.thread).str(":");
    if st.depth == 0 {
        l.str(" (no stack)");
    }
    l.write_to(2);
    let mut path = [0u8; 200];
    for (k, &pc) in st.frames().iter().enumerate() {
        let mut l = Line::new();
        l.str("my_alloc:     #").dec(k as u64).str(" ").hex(pc as u64);
        // A return address points after its call: the call's own byte is one before.
        if let Some((len, offset)) = maps::locate(pc.wrapping_sub(1), &mut path) {
            l.str(" ").str(core::str::from_utf8(&path[..len]).unwrap_or("?")).str("+").hex(offset as u64 + 1);
        }
        l.write_to(2);
    }
}

/// A guarded block misused in `func`: `what` about pointer `p` (slot `i`); aborts.
#[cold]
pub fn misuse(func: &str, what: &str, p: usize, i: usize) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" ").hex(p as u64);
    let s = pool::slot(i);
    if s.state != State::Unused {
        l.str(" (the ").dec(s.size as u64).str("-byte guarded block at ").hex(s.user as u64).str(")");
    }
    l.write_to(2);
    if s.state != State::Unused {
        stacks_of(s);
    }
    print_stack("  this call", &Stack::here());
    os::abort()
}

/// A pointer into the pool's guard pages handed to `func`; aborts.
#[cold]
pub fn misuse_outside(func: &str, p: usize) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): pointer into a guard page, not to a block: ").hex(p as u64);
    l.write_to(2);
    os::abort()
}

/// The fill around the live guarded block `p` (slot `i`) was overwritten, `at` bytes after its
/// start (`after`) or before it; found by `func`; aborts.
#[cold]
pub fn damaged(func: &str, what: &str, p: usize, i: usize, at: usize, after: bool) -> ! {
    let s = pool::slot(i);
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" the ").dec(s.size as u64);
    l.str("-byte block at ").hex(p as u64);
    if after {
        l.str(" was written at offset ").dec(at as u64);
    } else {
        l.str(" was written ");
        bytes(&mut l, at).str(" before its start");
    }
    l.write_to(2);
    stacks_of(s);
    print_stack("  freed", &Stack::here());
    os::abort()
}
