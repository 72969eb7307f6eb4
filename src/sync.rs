//! The allocator's lock: a `spin` mutex that backs off to `sched_yield` under contention.
//!
//! A pure spin lock is a poor neighbour on a machine with fewer cores than threads: a waiter can
//! spin for its whole time slice while the holder sits preempted. So a waiter spins briefly on a
//! plain read (no cache-line ping-pong), then yields. With `THREAD_SAFE = false` the lock compiles
//! to nothing.

use core::ops::{Deref, DerefMut};

use crate::config::THREAD_SAFE;
use crate::os;

/// Spins before a waiter starts yielding the processor.
const SPINS_BEFORE_YIELD: u32 = 64;

/// A lock owning a `T`.
pub struct Lock<T> {
    inner: spin::mutex::SpinMutex<T>,
}

/// Proof of holding a [`Lock`]; unlocks when dropped.
pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        Lock { inner: spin::mutex::SpinMutex::new(value) }
    }

    /// Acquires the lock, spinning then yielding while another thread holds it.
    #[inline]
    pub fn lock(&self) -> Guard<'_, T> {
        if THREAD_SAFE {
            self.acquire();
        }
        Guard { lock: self }
    }

    /// Acquires the lock only if it is free now.
    #[inline]
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        if THREAD_SAFE {
            core::mem::forget(self.inner.try_lock()?);
        }
        Some(Guard { lock: self })
    }

    #[inline]
    fn acquire(&self) {
        let mut spins = 0;
        loop {
            if let Some(g) = self.inner.try_lock() {
                // The guard's job is done by `Guard`'s drop (force_unlock), keeping one guard type
                // for the thread-safe and the single-threaded builds.
                core::mem::forget(g);
                return;
            }
            while self.inner.is_locked() {
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    os::yield_now();
                }
            }
        }
    }

    /// Takes the lock and keeps it held with no guard: for `fork`, whose handlers lock in the
    /// parent's prepare step and unlock in another function after the fork.
    pub fn lock_for_fork(&self) {
        core::mem::forget(self.lock());
    }

    /// The value, while the lock is held through [`Lock::lock_for_fork`] (no guard exists).
    pub fn as_ptr_for_fork(&self) -> *mut T {
        self.inner.as_mut_ptr()
    }

    /// Releases a lock taken by [`Lock::lock_for_fork`]; in a fork child, also a lock whose holder
    /// no longer exists.
    ///
    /// # Safety
    /// The lock must be held by this thread through `lock_for_fork`, or its holder must be gone
    /// (the child of a fork).
    pub unsafe fn unlock_after_fork(&self) {
        if THREAD_SAFE {
            // SAFETY: forwarded from the caller: nobody else believes it holds the lock.
            unsafe { self.inner.force_unlock() }
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock (or running single-threaded).
        unsafe { &*self.lock.inner.as_mut_ptr() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the guard is unique.
        unsafe { &mut *self.lock.inner.as_mut_ptr() }
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if THREAD_SAFE {
            // SAFETY: this guard holds the lock.
            unsafe { self.lock.inner.force_unlock() }
        }
    }
}
