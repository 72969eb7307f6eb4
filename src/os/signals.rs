//! Signals: a handler for a signal asked for by an option, and the fault handler of guarded
//! blocks, which keeps the action it displaces and hands faults that are not its own back.

use super::keep_errno;

/// Installs `handler` for signal `sig` (with `SA_RESTART`, so that the program's system calls are
/// not cut short by it); false if the signal cannot be caught. From the constructor only.
pub fn on_signal(sig: i32, handler: extern "C" fn(i32)) -> bool {
    // SAFETY: a zeroed sigaction is a valid empty one; the handler has the signature the kernel
    // calls, and the old action is not needed.
    keep_errno(|| unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, core::ptr::null_mut()) == 0
    })
}

/// An action for a fault signal as `sigaction` keeps it: what `on_fault` displaced.
pub type SignalAction = libc::sigaction;

/// What a fault handler is called with: the signal, its `siginfo_t`, and the interrupted
/// context.
pub type FaultHandler = extern "C" fn(i32, *mut libc::siginfo_t, *mut core::ffi::c_void);

/// Installs `handler` for the fault signal `sig` (with `SA_SIGINFO`, on the alternate stack if
/// the thread has one), storing the action it displaces into `old`; false if it cannot.
pub fn on_fault(sig: i32, handler: FaultHandler, old: &mut SignalAction) -> bool {
    // SAFETY: a zeroed sigaction is a valid empty one; the handler has the signature the kernel
    // calls with SA_SIGINFO; `old` is a valid out-parameter.
    keep_errno(|| unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, old) == 0
    })
}

/// Puts back the action `act` for `sig` (a fault that is not ours, for the program's own
/// handling or the default one).
pub fn restore_action(sig: i32, act: &SignalAction) {
    // SAFETY: `act` is an action sigaction gave us.
    keep_errno(|| unsafe { libc::sigaction(sig, act, core::ptr::null_mut()) });
}

/// Calls the program's own handler `act` for a fault it installed before ours: the three-argument
/// form if it asked for SA_SIGINFO, else the one-argument form. False if `act` is no handler
/// (the default action, or ignore).
///
/// # Safety
/// `info` and `ctx` are what the kernel passed to our handler for `sig`.
pub unsafe fn call_action(act: &SignalAction, sig: i32, info: *mut libc::siginfo_t, ctx: *mut core::ffi::c_void) -> bool {
    let h = act.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        return false;
    }
    if act.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this address as a three-argument handler.
        let f: FaultHandler = unsafe { core::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed this address as a one-argument handler.
        let f: extern "C" fn(i32) = unsafe { core::mem::transmute(h) };
        f(sig);
    }
    true
}

/// The address a fault signal reports, and whether the access was a write (x86-64 says so in the
/// page-fault error code; elsewhere `None`).
///
/// # Safety
/// `info` and `ctx` are what the kernel passed to a SA_SIGINFO handler of a fault signal.
pub unsafe fn fault_address(info: *const libc::siginfo_t, ctx: *const core::ffi::c_void) -> (usize, Option<bool>) {
    // SAFETY: the caller passes the kernel's siginfo for a fault, which carries si_addr.
    let addr = unsafe { (*info).si_addr() } as usize;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: on x86-64 Linux the context is a ucontext_t; REG_ERR holds the fault's error
        // code, whose bit 1 is set for a write.
        let err = unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize] };
        (addr, Some(err & 2 != 0))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        (addr, None)
    }
}
