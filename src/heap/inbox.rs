//! The inbox: blocks freed by threads of other heaps, on their way home.
//!
//! A thread that frees another heap's small blocks collects them (its cache's outbox for that
//! heap) and sends them home in one go: it sorts them into one chain per class (their headers
//! are still in its cache: it just freed them), links the chains together and pushes them onto
//! the owner's inbox, a lock-free stack of chains, with one compare-and-swap. The owner empties
//! it with one swap on its slow path (a cache refill, a trim) and parks each chain whole on its
//! quick list, reading only the chain's first block. The senders never take the owner's locks
//! and the owner's hot path never looks at the inbox.
//!
//! Blocks in the inbox are `QUICK` (a second free of one is a double free), linked within a
//! chain through their first word with the heap's link encoding. A chain's first block also
//! holds, in its second word, the next chain (encoded likewise), and in its third the chain's
//! last block and length (every block has at least three words).

use core::sync::atomic::Ordering;

use crate::block;
use crate::config::WORD;
use crate::diag::fatal;
use crate::size_class::{quick_class_of_block, NUM_QUICK, QUICK_SIZE};
use crate::source::Source;

use super::Heap;

/// Bits of a chain's third word that hold its last block's user pointer; its length is above.
const TAIL_BITS: u32 = 48;

impl<S: Source> Heap<S> {
    /// Sends home a chain of `QUICK` blocks of this heap, of any quick classes (first `head`,
    /// linked with this heap's encoding, the last link 0, each block's second word its quick
    /// class): sorted into one chain per class and pushed onto the inbox with one
    /// compare-and-swap.
    ///
    /// # Safety
    /// The chain's blocks are `QUICK` blocks of this heap, validated by the caller when they
    /// were freed, that it owned since and gives up.
    pub unsafe fn send_home(&self, head: usize) {
        let secret = self.secret();
        let mut chains = [(0usize, 0usize, 0usize); NUM_QUICK];
        let (mut p, mut bytes) = (head, 0);
        while p != 0 {
            let next = self.next_quick(p, secret);
            // SAFETY: the caller's chain: QUICK blocks it owns, their class in the second word
            // (bounded: a program's write after free must not send us out of the array).
            let c = unsafe { *((p + WORD) as *const usize) };
            if c >= NUM_QUICK {
                fatal("free", "corrupted block among remote frees (use after free?)", p);
            }
            let (h, t, n) = &mut chains[c];
            // SAFETY: as above; the first word is the link.
            unsafe { *(p as *mut usize) = block::encode_link(p, *h, secret) };
            if *n == 0 {
                *t = p;
            }
            (*h, *n) = (p, *n + 1);
            bytes += QUICK_SIZE[c] as usize;
            p = next;
        }
        // Link the chains to each other through their first blocks.
        let (mut first, mut last) = (0, 0);
        for &(h, t, n) in chains.iter().filter(|ch| ch.2 > 0) {
            // SAFETY: h is the first block of a chain the caller gives up; it has three words.
            unsafe {
                *((h + 2 * WORD) as *mut usize) = t | (n << TAIL_BITS);
                *((h + WORD) as *mut usize) = block::encode_link(h + WORD, first, secret);
            }
            if first == 0 {
                last = h;
            }
            first = h;
        }
        if first == 0 {
            return;
        }
        // Counted before the chains are published, so that a drain never subtracts first.
        self.inbox_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut old = self.inbox.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns the chains until the exchange publishes them.
            unsafe { *((last + WORD) as *mut usize) = block::encode_link(last + WORD, old, secret) };
            match self.inbox.compare_exchange_weak(old, first, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
    }

    /// The quick class of the `QUICK` block `p` on its way home; a damaged one is fatal.
    ///
    /// # Safety
    /// `p` is a block of a chain sent home, owned by the caller.
    unsafe fn chain_class(&self, p: usize, secret: u64) -> usize {
        // SAFETY: forwarded from the caller: the header is the block's.
        let h = unsafe { block::load(p - block::HEADER) };
        match quick_class_of_block(block::size_of(h)) {
            Some(c) if block::is_sealed(p - block::HEADER, h, secret) && block::state_of(h) == block::QUICK => c,
            _ => fatal("free", "corrupted block among remote frees (use after free?)", p),
        }
    }

    /// Verifies the inbox's chains (for `check`, which holds every lock: a drain that races
    /// cannot park what it took, and senders only push in front) and counts their blocks, at
    /// most `limit` of them.
    pub(super) fn check_inbox(&self, limit: usize) -> Result<usize, &'static str> {
        let secret = self.secret();
        let mut h = self.inbox.load(Ordering::Acquire);
        let mut total = 0;
        while h != 0 {
            if !self.plausible(h) || self.source.pages().owner(h - block::HEADER) != self.tag {
                return Err("inbox entry outside the heap");
            }
            // SAFETY: h is the first block of a chain in the inbox: a QUICK block of the heap.
            let (hdr, next, word) = unsafe {
                (block::load(h - block::HEADER), block::decode_link(h + WORD, *((h + WORD) as *const usize), secret), *((h + 2 * WORD) as *const usize))
            };
            let Some(c) = quick_class_of_block(block::size_of(hdr)) else { return Err("inbox chain of no quick class") };
            let (tail, n) = (word & ((1 << TAIL_BITS) - 1), word >> TAIL_BITS);
            let (mut p, mut seen, mut last) = (h, 0, 0);
            while p != 0 {
                // SAFETY: chain members are QUICK blocks of the heap (checked as we go).
                let b = unsafe { block::load(p - block::HEADER) };
                if !block::is_sealed(p - block::HEADER, b, secret) || block::state_of(b) != block::QUICK || quick_class_of_block(block::size_of(b)) != Some(c) {
                    return Err("inbox entry is not a quick block of its chain's class");
                }
                seen += 1;
                total += 1;
                if total > limit {
                    return Err("inbox longer than the quick blocks (cycle?)");
                }
                last = p;
                // SAFETY: as above; the first word is the link.
                p = block::decode_link(p, unsafe { *(p as *const usize) }, secret);
            }
            if seen != n || last != tail {
                return Err("inbox chain count or tail is off");
            }
            h = next;
        }
        Ok(total)
    }

    /// Bytes waiting in the inbox (racy: a hint for accounting).
    pub fn inbox_bytes(&self) -> usize {
        self.inbox_bytes.load(Ordering::Relaxed)
    }

    /// Parks every chain of the inbox on its quick list. Returns the blocks moved (0, after one
    /// load, when the inbox is empty).
    pub fn drain_inbox(&self) -> usize {
        if self.inbox.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut h = self.inbox.swap(0, Ordering::Acquire);
        let secret = self.secret();
        let (mut moved, mut bytes) = (0, 0);
        while h != 0 {
            if !self.plausible(h) {
                fatal("malloc", "corrupted list of remote frees (use after free?) at", h);
            }
            // SAFETY: h is the first block of a chain sent home (checked plausible): ours now.
            let (c, next, word) = unsafe {
                let c = self.chain_class(h, secret);
                (c, block::decode_link(h + WORD, *((h + WORD) as *const usize), secret), *((h + 2 * WORD) as *const usize))
            };
            let (tail, n) = (word & ((1 << TAIL_BITS) - 1), word >> TAIL_BITS);
            if n == 0 || !self.plausible(tail) {
                fatal("malloc", "corrupted list of remote frees (use after free?) at", h);
            }
            // Parked without the hoarding test of `flush`: these blocks were freed just now,
            // and the owner's next refills are what they are for.
            self.park(c, h, tail, n);
            moved += n;
            bytes += n * QUICK_SIZE[c] as usize;
            h = next;
        }
        self.inbox_bytes.fetch_sub(bytes, Ordering::Relaxed);
        moved
    }
}
