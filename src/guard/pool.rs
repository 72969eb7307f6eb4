//! The guarded pool: one reservation of address space, cut into slots of a few data pages each
//! with an inaccessible guard page between neighbours (and before the first), plus the slots'
//! bookkeeping in a mapping of its own.
//!
//! ```text
//! | guard | slot 0 data | guard | slot 1 data | guard | ... | slot S-1 data | guard |
//! ```
//!
//! A slot's data pages are accessible only while it holds a live block, and only those the block
//! touches (the others guard it too). Free slots wait in a
//! first-in first-out ring: a freed slot goes to its back, and a slot is taken from the front only
//! while more than `quarantine` wait, so a freed block stays inaccessible until at least that many
//! other guarded blocks have been allocated.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{GUARD_FRAMES, GUARD_MODE_SLOTS, GUARD_SAMPLED_SLOTS, PAGE};
use crate::{options, os};

/// What a slot holds.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Never used.
    Unused = 0,
    Live = 1,
    /// Its block was freed; the data pages are inaccessible (until the slot is taken again).
    Freed = 2,
}

/// A call stack and the thread it was taken on.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Stack {
    pub thread: u64,
    pub depth: usize,
    pub frames: [usize; GUARD_FRAMES],
}

impl Stack {
    pub const EMPTY: Stack = Stack { thread: 0, depth: 0, frames: [0; GUARD_FRAMES] };

    /// The calling thread's stack (without the allocator's frames).
    pub fn here() -> Stack {
        let mut s = Stack { thread: os::thread_id(), depth: 0, frames: [0; GUARD_FRAMES] };
        s.depth = crate::unwind::capture(&mut s.frames);
        s
    }

    pub fn frames(&self) -> &[usize] {
        &self.frames[..self.depth.min(GUARD_FRAMES)]
    }
}

/// One slot's bookkeeping. Written under the pool's lock; the fault handler reads it without.
#[repr(C)]
pub struct Slot {
    pub state: State,
    /// The block's user pointer and requested size (kept after its free, for reports).
    pub user: usize,
    pub size: usize,
    /// The pages made accessible for it, [lo, hi): the ones it touches, the rest of the slot's
    /// data pages stay inaccessible.
    pub lo: usize,
    pub hi: usize,
    pub alloc: Stack,
    pub free: Stack,
}

/// Where the pool lies, for the lock-free range test and the fault handler: [BASE, END), each
/// slot `SPAN` bytes from the first data page, `DATA` bytes of them accessible.
static BASE: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static SPAN: AtomicUsize = AtomicUsize::new(0);
static DATA: AtomicUsize = AtomicUsize::new(0);
/// The slots' bookkeeping (an array of `Slot`), for the fault handler.
static SLOTS: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Whether `addr` lies in the pool (guard pages included).
#[inline(always)]
pub fn contains(addr: usize) -> bool {
    addr.wrapping_sub(BASE.load(Ordering::Relaxed)) < END.load(Ordering::Relaxed).wrapping_sub(BASE.load(Ordering::Relaxed))
}

/// Where in the pool an address lies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the data pages of this slot.
    Data(usize),
    /// In the guard page before this slot's data (`count()` for the one after the last slot).
    GuardBefore(usize),
}

/// Where `addr`, which `contains` says is in the pool, lies.
pub fn place(addr: usize) -> Place {
    let (base, span, data) = (BASE.load(Ordering::Relaxed), SPAN.load(Ordering::Relaxed), DATA.load(Ordering::Relaxed));
    let rel = addr - base;
    if rel < PAGE {
        return Place::GuardBefore(0);
    }
    let (slot, within) = ((rel - PAGE) / span, (rel - PAGE) % span);
    if within < data { Place::Data(slot) } else { Place::GuardBefore(slot + 1) }
}

/// The slot a block's user pointer `p` (in the pool) belongs to: the one whose data pages hold
/// it, or end at it (a block of 0 bytes at the end of its page).
pub fn slot_of(p: usize) -> Option<usize> {
    let (base, span, data) = (BASE.load(Ordering::Relaxed), SPAN.load(Ordering::Relaxed), DATA.load(Ordering::Relaxed));
    let rel = p.checked_sub(base + PAGE)?;
    let (slot, within) = (rel / span, rel % span);
    (within <= data && slot < count()).then_some(slot)
}

/// How many slots the pool has (0 before it exists).
pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// The bookkeeping of slot `i < count()`.
pub fn slot(i: usize) -> &'static Slot {
    debug_assert!(i < count());
    // SAFETY: SLOTS holds `count()` slots, mapped for the life of the process.
    unsafe { &*(SLOTS.load(Ordering::Relaxed) as *const Slot).add(i) }
}

/// The first data byte of slot `i`, and how many there are.
pub fn data_of(i: usize) -> (usize, usize) {
    (BASE.load(Ordering::Relaxed) + PAGE + i * SPAN.load(Ordering::Relaxed), DATA.load(Ordering::Relaxed))
}

/// The pool's mutable part, under its lock.
pub struct Pool {
    /// The ring of free slots (`count()` entries), its front and length.
    ring: usize,
    front: usize,
    waiting: usize,
    quarantine: usize,
    /// The pool could not be made (or not yet tried).
    failed: bool,
}

impl Pool {
    pub const fn new() -> Self {
        Pool { ring: 0, front: 0, waiting: 0, quarantine: 0, failed: false }
    }

    /// Makes the pool on first use; false if it cannot be had.
    pub fn ensure(&mut self) -> bool {
        if count() != 0 {
            return true;
        }
        if self.failed {
            return false;
        }
        self.failed = !self.make();
        !self.failed
    }

    fn make(&mut self) -> bool {
        let guard_mode = options::GUARD_ALL.load(Ordering::Relaxed);
        let slots = match options::GUARD_SLOTS.load(Ordering::Relaxed) {
            0 if guard_mode => GUARD_MODE_SLOTS,
            0 => GUARD_SAMPLED_SLOTS,
            n => n,
        };
        let data = if guard_mode { options::GUARD_MAX.load(Ordering::Relaxed).max(1).div_ceil(PAGE) * PAGE } else { PAGE };
        let span = data + PAGE;
        let Some(len) = slots.checked_mul(span).and_then(|l| l.checked_add(PAGE)) else { return false };
        let Some(base) = os::reserve_guarded(len) else { return false };
        let meta_len = (slots * (core::mem::size_of::<Slot>() + core::mem::size_of::<u32>())).div_ceil(PAGE) * PAGE;
        let Some(meta) = os::map_private(meta_len) else { return false };
        // Slots' bookkeeping first (zero is `Unused`), then the ring, all slots in order.
        let ring = meta + slots * core::mem::size_of::<Slot>();
        for i in 0..slots {
            // SAFETY: the ring's entries lie in the fresh mapping, after the slots.
            unsafe { (ring as *mut u32).add(i).write(i as u32) };
        }
        self.ring = ring;
        self.front = 0;
        self.waiting = slots;
        self.quarantine = match options::GUARD_QUARANTINE.load(Ordering::Relaxed) {
            usize::MAX => slots / 2,
            q => q.min(slots - 1),
        };
        BASE.store(base, Ordering::Relaxed);
        END.store(base + len, Ordering::Relaxed);
        SPAN.store(span, Ordering::Relaxed);
        DATA.store(data, Ordering::Relaxed);
        SLOTS.store(meta, Ordering::Relaxed);
        COUNT.store(slots, Ordering::Release);
        true
    }

    /// The largest request a slot holds.
    pub fn capacity(&self) -> usize {
        DATA.load(Ordering::Relaxed)
    }

    /// Takes the slot at the ring's front, unless only the quarantine waits.
    pub fn take(&mut self) -> Option<usize> {
        if self.waiting <= self.quarantine {
            return None;
        }
        // SAFETY: `front` indexes the ring, which has `count()` entries.
        let i = unsafe { (self.ring as *const u32).add(self.front).read() } as usize;
        self.front = (self.front + 1) % count();
        self.waiting -= 1;
        Some(i)
    }

    /// Puts slot `i` at the ring's back.
    pub fn give_back(&mut self, i: usize) {
        let back = (self.front + self.waiting) % count();
        // SAFETY: `back` indexes the ring; it is free, since fewer than `count()` slots wait.
        unsafe { (self.ring as *mut u32).add(back).write(i as u32) };
        self.waiting += 1;
    }

    /// Slot `i`'s bookkeeping, to change under the lock.
    pub fn slot_mut(&mut self, i: usize) -> &mut Slot {
        // SAFETY: SLOTS holds `count()` slots; the pool's lock, which `self` stands for, is the
        // only writer's.
        unsafe { &mut *(SLOTS.load(Ordering::Relaxed) as *mut Slot).add(i) }
    }
}
