//! The stack walk: from this frame's rsp and rbp, each frame's call-frame rule (`cfi`) gives the
//! caller's CFA, return address and rbp. Rules are kept in a table by pc, so that a walk through
//! code seen before reads no `.eh_frame` at all: about twenty instructions a frame, where
//! libgcc's walk decodes every frame's entry afresh (more than a thousand).
//!
//! A walk gives up (`None`, and the caller asks libgcc) at the first rule it does not follow or
//! a CFA that does not climb the stack. The table is emptied when the loader reports that an
//! object may have been unloaded, since other code may then come to live at the same addresses.

use core::sync::atomic::{AtomicU64, Ordering};

use super::cfi::{self, Row, Rule};
use crate::os;

/// Entries of the rule table: direct-mapped by the low bits of the pc. A power of two.
const SLOTS: usize = 4096;
const SLOT_BITS: u32 = SLOTS.trailing_zeros();
/// The largest frame a walk believes in: a CFA further above the stack pointer than this is
/// taken for a broken rule.
const FRAME_MAX: usize = 256 << 20;

/// An entry: the pc's bits above the slot index (the tag), the row's kind, and a rule packed
/// as below; 0 is an empty slot.
static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// The loader's unload count the table was filled under.
static REMOVED: AtomicU64 = AtomicU64::new(0);

const KIND_SHIFT: u32 = 26;
const KIND_FRAME: u64 = 1;
const KIND_END: u64 = 2;
const KIND_UNSUPPORTED: u64 = 3;
const CFA_RBP: u64 = 1 << 25;
const RBP_SLOT_SHIFT: u32 = 16;
const TAG_SHIFT: u32 = 28;
/// Addresses above this are not tagged (user space on x86-64 is below 2^47).
const PC_LIMIT: usize = 1 << 48;

/// The packed form of a rule, if it has one: the CFA offset in 16 bits, rbp's slot as a count
/// of 8-byte words below the CFA (0: not saved), the return address just below the CFA.
fn pack(rule: &Rule) -> Option<u64> {
    if rule.ra_at != -8 || rule.cfa_offset > 0xFFFF {
        return None;
    }
    let rbp_slot = match rule.rbp_at {
        None => 0,
        Some(off) if off < 0 && off % 8 == 0 && -off / 8 <= 0xFF => (-off / 8) as u64,
        Some(_) => return None,
    };
    Some(KIND_FRAME << KIND_SHIFT | if rule.cfa_rbp { CFA_RBP } else { 0 } | rbp_slot << RBP_SLOT_SHIFT | rule.cfa_offset)
}

fn unpack(e: u64) -> Row {
    match (e >> KIND_SHIFT) & 3 {
        KIND_END => Row::End,
        KIND_UNSUPPORTED => Row::Unsupported,
        _ => {
            let rbp_slot = (e >> RBP_SLOT_SHIFT) & 0xFF;
            Row::Frame(Rule {
                cfa_rbp: e & CFA_RBP != 0,
                cfa_offset: e & 0xFFFF,
                rbp_at: (rbp_slot != 0).then_some(-(rbp_slot as i64) * 8),
                ra_at: -8,
            })
        }
    }
}

/// The row in force at `pc`, from the table or else from the pc's FDE (then remembered).
fn row(pc: usize) -> Row {
    if pc >= PC_LIMIT {
        return lookup(pc);
    }
    let slot = &TABLE[pc & (SLOTS - 1)];
    let tag = ((pc >> SLOT_BITS) as u64) << TAG_SHIFT;
    let e = slot.load(Ordering::Relaxed);
    if e != 0 && e & !((1 << TAG_SHIFT) - 1) == tag {
        return unpack(e);
    }
    let row = lookup(pc);
    let packed = match row {
        Row::Frame(rule) => pack(&rule),
        Row::End => Some(KIND_END << KIND_SHIFT),
        Row::Unsupported => Some(KIND_UNSUPPORTED << KIND_SHIFT),
    };
    if let Some(bits) = packed {
        slot.store(tag | bits, Ordering::Relaxed);
    }
    row
}

fn lookup(pc: usize) -> Row {
    match os::find_fde(pc) {
        Some((fde, bases)) => cfi::row_at(fde, &bases, pc),
        None => Row::End,
    }
}

/// Empties the table if an object may have been unloaded since it was filled.
fn check_loaded_objects() {
    let removed = os::objects_removed();
    if removed != REMOVED.load(Ordering::Relaxed) {
        for slot in &TABLE {
            slot.store(0, Ordering::Relaxed);
        }
        REMOVED.store(removed, Ordering::Relaxed);
    }
}

/// Stores the return addresses of the calling thread's stack, innermost first (the first is in
/// this function's caller), into `out`; how many. `None`: this walk cannot follow the stack.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub fn stack(out: &mut [usize]) -> Option<usize> {
    check_loaded_objects();
    let (mut pc, mut sp, mut bp) = os::frame_registers();
    let mut n = 0;
    while n < out.len() {
        // A return address follows its call: the call's own row is the one before it (the
        // starting pc, read just after an instruction, is treated the same way).
        let rule = match row(pc - 1) {
            Row::Frame(rule) => rule,
            Row::End => break,
            Row::Unsupported => return None,
        };
        let cfa = (if rule.cfa_rbp { bp } else { sp }).wrapping_add(rule.cfa_offset as usize);
        if cfa <= sp || cfa - sp > FRAME_MAX || cfa % 8 != 0 {
            return None;
        }
        let ra_at = cfa.wrapping_add(rule.ra_at as usize);
        // SAFETY: the rule of a frame on this thread's stack says where its caller saved the
        // return address (and rbp): slots of that frame, between this frame's rsp and the CFA.
        unsafe {
            pc = (ra_at as *const usize).read();
            if let Some(off) = rule.rbp_at {
                bp = (cfa.wrapping_add(off as usize) as *const usize).read();
            }
        }
        sp = cfa;
        if pc == 0 {
            break;
        }
        out[n] = pc;
        n += 1;
    }
    Some(n)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn stack(_out: &mut [usize]) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pack_and_unpack() {
        for rule in [
            Rule { cfa_rbp: false, cfa_offset: 8, rbp_at: None, ra_at: -8 },
            Rule { cfa_rbp: true, cfa_offset: 16, rbp_at: Some(-16), ra_at: -8 },
            Rule { cfa_rbp: false, cfa_offset: 0xFFFF, rbp_at: Some(-8 * 255), ra_at: -8 },
        ] {
            assert_eq!(unpack(pack(&rule).unwrap()), Row::Frame(rule));
        }
        assert_eq!(pack(&Rule { cfa_rbp: false, cfa_offset: 0x1_0000, rbp_at: None, ra_at: -8 }), None);
        assert_eq!(pack(&Rule { cfa_rbp: false, cfa_offset: 8, rbp_at: Some(-12), ra_at: -8 }), None);
        assert_eq!(pack(&Rule { cfa_rbp: false, cfa_offset: 8, rbp_at: None, ra_at: -16 }), None);
        assert_eq!(unpack(KIND_END << KIND_SHIFT), Row::End);
        assert_eq!(unpack(KIND_UNSUPPORTED << KIND_SHIFT), Row::Unsupported);
    }
}
