//! Exhaustion, impossible sizes, and misuse: each caught with its diagnosis.

use super::*;

#[test]
fn exhaustion_fails_cleanly_and_recovers() {
    let h = new_heap(64 << 20);
    let mut ps = Vec::new();
    h.source().set_budget(8 << 20);
    loop {
        match h.malloc(3000) {
            Some(p) => ps.push(p),
            None => break,
        }
        assert!(ps.len() < 10_000, "the budget was not enforced");
    }
    assert!(h.malloc(MMAP_THRESHOLD * 64).is_none());
    assert!(h.memalign(4096, 100_000).is_none());
    let r = h.check().unwrap();
    assert_eq!(r.in_use_blocks, ps.len());
    // Freed memory is reused, and more memory makes allocation succeed again.
    h.free(ps.pop().unwrap());
    assert!(h.malloc(3000).is_some());
    h.source().set_budget(usize::MAX);
    assert!(h.malloc(1 << 20).is_some());
    h.check().unwrap();
}

#[test]
fn impossible_sizes_fail_without_touching_the_heap() {
    let h = new_heap(16 << 20);
    for n in [usize::MAX, usize::MAX - 4096, isize::MAX as usize, (isize::MAX as usize) / 2 + 1] {
        assert!(h.malloc(n).is_none(), "malloc({n})");
        assert!(h.memalign(1 << 20, n).is_none());
    }
    let p = h.malloc(10).unwrap();
    assert!(realloc(&h, p, usize::MAX).is_none());
    h.free(p);
    h.check().unwrap();
}

#[test]
#[should_panic(expected = "free(): double free of")]
fn double_free_of_a_small_block_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(32).unwrap();
    h.free(p);
    h.free(p);
}

#[test]
#[should_panic(expected = "free(): double free of")]
fn double_free_of_a_coalesced_block_is_caught() {
    let h = new_heap(16 << 20);
    let _live = h.malloc(200_000).unwrap(); // the heap is not nearly empty: nothing is trimmed
    let a = h.malloc(50_000).unwrap();
    let b = h.malloc(50_000).unwrap();
    let _guard = h.malloc(50_000).unwrap();
    h.free(a);
    h.free(b); // b merges into a: its header is stale but still says FREE
    h.free(b);
}

#[test]
#[should_panic(expected = "realloc(): double free of")]
fn realloc_of_a_freed_block_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(100).unwrap();
    h.free(p);
    realloc(&h, p, 200);
}

#[test]
#[should_panic(expected = "invalid pointer")]
fn a_pointer_into_the_middle_of_a_block_is_rejected() {
    let h = new_heap(16 << 20);
    let p = h.malloc(4096).unwrap();
    fill(p, 4096, 0x5a);
    h.free(p + 256);
}

#[test]
#[should_panic(expected = "invalid pointer (not allocated by my_alloc)")]
fn a_foreign_pointer_is_rejected() {
    let h = new_heap(16 << 20);
    let _ = h.malloc(10).unwrap();
    let local = [0u64; 32];
    // Aligned like a real block, so that only ownership can reject it.
    let p = (local.as_ptr() as usize + ALIGNMENT) & !(ALIGNMENT - 1);
    h.free(p);
}

#[test]
#[should_panic(expected = "corrupted block header")]
fn a_smashed_header_is_caught() {
    let h = new_heap(16 << 20);
    let p = h.malloc(200).unwrap();
    // SAFETY: the header word is heap memory (this is the corruption under test).
    unsafe { *((p - block::HEADER) as *mut u64) ^= 0x1000 };
    h.free(p);
}

#[test]
#[should_panic(expected = "corrupted free list")]
fn a_use_after_free_write_into_a_quick_block_is_caught() {
    let h = new_heap(16 << 20);
    let a = h.malloc(64).unwrap();
    let b = h.malloc(64).unwrap();
    h.free(a);
    h.free(b);
    // Overwrite b's link with an address the attacker wants handed out.
    // SAFETY: b's payload is heap memory (this is the misuse under test).
    unsafe { *(b as *mut usize) = 0x4141_4141_4141 };
    let _ = h.malloc(64);
    let _ = h.malloc(64);
}

