//! The DWARF call-frame rule in force at one pc: where the caller's frame starts (the CFA), and
//! where the return address and the caller's rbp were saved. It is read from the frame
//! description entry (FDE) that covers the pc in its object's `.eh_frame`, by running its CIE's
//! and its own CFA instructions up to the pc (DWARF 4, section 6.4, with the GNU extensions
//! `.eh_frame` uses).
//!
//! Only what an x86-64 walk of return addresses needs is kept: the CFA as rsp or rbp plus an
//! offset, the return address and rbp at fixed offsets from it. Anything else (a CFA computed by
//! an expression or from another register, a signal frame, an encoding we do not know) is
//! `Row::Unsupported`, and the walk leaves that stack to libgcc.

use crate::os::EhBases;

/// DWARF register numbers on x86-64 (System V psABI, figure 3.36).
const RBP: u64 = 6;
const RSP: u64 = 7;
const RETURN_ADDRESS: u64 = 16;

/// `DW_CFA_remember_state` nesting kept; deeper nesting is unsupported.
const REMEMBERED_MAX: usize = 8;

/// What the rule at a pc says about the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Row {
    /// A frame whose caller is found by `Rule`.
    Frame(Rule),
    /// The outermost frame (its return address is undefined) or code without call-frame
    /// information: the walk ends here.
    End,
    /// A rule this reader does not follow.
    Unsupported,
}

/// How to find the caller's frame from this one's rsp and rbp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rule {
    /// The CFA is rbp + `cfa_offset`, else rsp + `cfa_offset`.
    pub cfa_rbp: bool,
    pub cfa_offset: u64,
    /// Where the caller's rbp was saved, from the CFA; `None`: rbp still holds it.
    pub rbp_at: Option<i64>,
    /// Where the return address was saved, from the CFA.
    pub ra_at: i64,
}

/// The rule of one register, as far as the walk cares.
#[derive(Clone, Copy)]
enum Saved {
    /// Still in the register.
    Same,
    /// At CFA + offset.
    At(i64),
    /// No value: for the return address, the end of the stack.
    Undefined,
    /// In another register, or computed: not followed.
    Other,
}

/// The rules of a row: the CFA's and the two registers the walk restores.
#[derive(Clone, Copy)]
struct State {
    cfa_reg: u64,
    cfa_offset: i64,
    cfa_computed: bool,
    rbp: Saved,
    ra: Saved,
}

impl State {
    fn set(&mut self, reg: u64, rule: Saved) {
        match reg {
            RBP => self.rbp = rule,
            RETURN_ADDRESS => self.ra = rule,
            _ => {}
        }
    }

    fn restore(&mut self, reg: u64, initial: &State) {
        match reg {
            RBP => self.rbp = initial.rbp,
            RETURN_ADDRESS => self.ra = initial.ra,
            _ => {}
        }
    }

    fn row(&self) -> Row {
        let ra_at = match self.ra {
            Saved::Undefined => return Row::End,
            Saved::At(off) => off,
            _ => return Row::Unsupported,
        };
        let rbp_at = match self.rbp {
            Saved::Same => None,
            Saved::At(off) => Some(off),
            _ => return Row::Unsupported,
        };
        if self.cfa_computed || !(self.cfa_reg == RSP || self.cfa_reg == RBP) || self.cfa_offset < 0 {
            return Row::Unsupported;
        }
        Row::Frame(Rule { cfa_rbp: self.cfa_reg == RBP, cfa_offset: self.cfa_offset as u64, rbp_at, ra_at })
    }
}

/// A bounded reader of `.eh_frame` bytes.
struct Reader {
    at: usize,
    end: usize,
}

impl Reader {
    fn bytes(&mut self, n: usize) -> Option<usize> {
        let start = self.at;
        if self.end - start < n {
            return None;
        }
        self.at += n;
        Some(start)
    }

    fn u8(&mut self) -> Option<u8> {
        let at = self.bytes(1)?;
        // SAFETY: `at` is inside the entry being read (checked against its end), which lies in
        // a loaded object's `.eh_frame`.
        Some(unsafe { *(at as *const u8) })
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let at = self.bytes(N)?;
        // SAFETY: as in `u8`, for N bytes.
        Some(unsafe { (at as *const [u8; N]).read_unaligned() })
    }

    fn uleb(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= ((b & 0x7F) as u64) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }

    fn sleb(&mut self) -> Option<i64> {
        let (mut v, mut shift) = (0i64, 0);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= ((b & 0x7F) as i64) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }

    /// A pointer in the `DW_EH_PE_*` encoding `enc` (the GNU extension `.eh_frame` uses).
    fn pointer(&mut self, enc: u8, bases: &EhBases) -> Option<usize> {
        let field = self.at;
        let v = match enc & 0x0F {
            0x00 => u64::from_ne_bytes(self.fixed::<8>()?),
            0x01 => self.uleb()?,
            0x02 => u16::from_ne_bytes(self.fixed::<2>()?) as u64,
            0x03 => u32::from_ne_bytes(self.fixed::<4>()?) as u64,
            0x04 => u64::from_ne_bytes(self.fixed::<8>()?),
            0x09 => self.sleb()? as u64,
            0x0A => i16::from_ne_bytes(self.fixed::<2>()?) as i64 as u64,
            0x0B => i32::from_ne_bytes(self.fixed::<4>()?) as i64 as u64,
            0x0C => u64::from_ne_bytes(self.fixed::<8>()?),
            _ => return None,
        };
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => field,
            0x20 => bases.text,
            0x30 => bases.data,
            0x40 => bases.func,
            _ => return None,
        };
        // An indirect pointer (0x80) is only used for personality routines, which are skipped.
        Some((base as u64).wrapping_add(v) as usize)
    }

    /// The bounds of the length-prefixed entry (CIE or FDE) at `at`: a reader over its body.
    fn entry(at: usize) -> Option<Reader> {
        let mut r = Reader { at, end: usize::MAX };
        let len = match u32::from_ne_bytes(r.fixed::<4>()?) {
            0 => return None, // the terminator
            0xFFFF_FFFF => u64::from_ne_bytes(r.fixed::<8>()?) as usize,
            n => n as usize,
        };
        r.end = r.at.checked_add(len)?;
        Some(r)
    }
}

/// What a CIE says about the FDEs that use it.
struct Cie {
    code_align: u64,
    data_align: i64,
    pointer_enc: u8,
    has_augmentation_data: bool,
    initial: State,
}

/// Reads the CIE at `at`, and runs its initial instructions.
fn read_cie(at: usize, bases: &EhBases) -> Option<Cie> {
    let mut r = Reader::entry(at)?;
    if u32::from_ne_bytes(r.fixed::<4>()?) != 0 {
        return None; // not a CIE
    }
    let version = r.u8()?;
    let aug_start = r.at;
    while r.u8()? != 0 {}
    let aug_end = r.at - 1;
    // SAFETY: the augmentation string lies inside the entry just bounded.
    let aug = unsafe { core::slice::from_raw_parts(aug_start as *const u8, aug_end - aug_start) };
    if aug.starts_with(b"eh") {
        return None; // a pre-3.0 GCC layout, with a pointer in the header
    }
    let code_align = r.uleb()?;
    let data_align = r.sleb()?;
    let ra_reg = if version == 1 { r.u8()? as u64 } else { r.uleb()? };
    if ra_reg != RETURN_ADDRESS {
        return None;
    }
    let mut pointer_enc = 0u8; // DW_EH_PE_absptr
    let has_augmentation_data = aug.first() == Some(&b'z');
    if has_augmentation_data {
        let len = r.uleb()? as usize;
        let data_end = r.at.checked_add(len)?;
        for &c in &aug[1..] {
            match c {
                b'R' => pointer_enc = r.u8()?,
                b'L' => {
                    r.u8()?;
                }
                b'P' => {
                    let enc = r.u8()?;
                    r.pointer(enc & 0x7F, bases)?;
                }
                _ => return None, // 'S' (a signal frame) and anything newer
            }
        }
        r.at = data_end;
    } else if !aug.is_empty() {
        return None;
    }
    let mut initial = State { cfa_reg: RSP, cfa_offset: 0, cfa_computed: false, rbp: Saved::Same, ra: Saved::Other };
    let unused = initial;
    let mut loc = 0;
    run(&mut r, &mut initial, &unused, &mut loc, usize::MAX, code_align, data_align, pointer_enc, bases)?;
    Some(Cie { code_align, data_align, pointer_enc, has_augmentation_data, initial })
}

/// The row at `pc` of the FDE at `fde`, whose pointers are relative to `bases`.
pub fn row_at(fde: *const u8, bases: &EhBases, pc: usize) -> Row {
    read_row(fde as usize, bases, pc).unwrap_or(Row::Unsupported)
}

fn read_row(fde: usize, bases: &EhBases, pc: usize) -> Option<Row> {
    let mut r = Reader::entry(fde)?;
    let cie_pointer_at = r.at;
    let cie_offset = u32::from_ne_bytes(r.fixed::<4>()?) as usize;
    if cie_offset == 0 {
        return None; // a CIE, not an FDE
    }
    let cie = read_cie(cie_pointer_at.checked_sub(cie_offset)?, bases)?;
    let start = r.pointer(cie.pointer_enc, bases)?;
    let range = r.pointer(cie.pointer_enc & 0x0F, bases)?;
    if pc < start || pc - start >= range {
        return None;
    }
    if cie.has_augmentation_data {
        let len = r.uleb()? as usize;
        r.bytes(len)?;
    }
    let mut state = cie.initial;
    let mut loc = start;
    run(&mut r, &mut state, &cie.initial, &mut loc, pc, cie.code_align, cie.data_align, cie.pointer_enc, bases)?;
    Some(state.row())
}

/// Runs CFA instructions into `state` until the location passes `pc` or the entry ends.
#[allow(clippy::too_many_arguments)]
fn run(r: &mut Reader, state: &mut State, initial: &State, loc: &mut usize, pc: usize, code_align: u64, data_align: i64, pointer_enc: u8, bases: &EhBases) -> Option<()> {
    let mut remembered = [*state; REMEMBERED_MAX];
    let mut depth = 0;
    let factored = |off: u64| (off as i64).wrapping_mul(data_align);
    while r.at < r.end {
        let op = r.u8()?;
        let mut advance = None;
        match (op >> 6, op & 0x3F) {
            (1, delta) => advance = Some(delta as u64),
            (2, reg) => {
                let off = r.uleb()?;
                state.set(reg as u64, Saved::At(factored(off)));
            }
            (3, reg) => state.restore(reg as u64, initial),
            _ => match op {
                0x00 => {}
                0x01 => {
                    *loc = r.pointer(pointer_enc, bases)?;
                    if *loc > pc {
                        return Some(());
                    }
                }
                0x02 => advance = Some(r.u8()? as u64),
                0x03 => advance = Some(u16::from_ne_bytes(r.fixed::<2>()?) as u64),
                0x04 => advance = Some(u32::from_ne_bytes(r.fixed::<4>()?) as u64),
                0x05 => {
                    let (reg, off) = (r.uleb()?, r.uleb()?);
                    state.set(reg, Saved::At(factored(off)));
                }
                0x06 => {
                    let reg = r.uleb()?;
                    state.restore(reg, initial);
                }
                0x07 => {
                    let reg = r.uleb()?;
                    state.set(reg, Saved::Undefined);
                }
                0x08 => {
                    let reg = r.uleb()?;
                    state.set(reg, Saved::Same);
                }
                0x09 => {
                    let reg = r.uleb()?;
                    r.uleb()?;
                    state.set(reg, Saved::Other);
                }
                0x0A => {
                    // GCC's unwinder keeps the CFA's rule with the registers' (what its own
                    // code generation expects), so the whole state is remembered.
                    if depth == REMEMBERED_MAX {
                        return None;
                    }
                    remembered[depth] = *state;
                    depth += 1;
                }
                0x0B => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    *state = remembered[depth];
                }
                0x0C => {
                    state.cfa_reg = r.uleb()?;
                    state.cfa_offset = r.uleb()? as i64;
                    state.cfa_computed = false;
                }
                0x0D => {
                    state.cfa_reg = r.uleb()?;
                    state.cfa_computed = false;
                }
                0x0E => state.cfa_offset = r.uleb()? as i64,
                0x0F => {
                    let len = r.uleb()? as usize;
                    r.bytes(len)?;
                    state.cfa_computed = true;
                }
                0x10 | 0x16 => {
                    let reg = r.uleb()?;
                    let len = r.uleb()? as usize;
                    r.bytes(len)?;
                    state.set(reg, Saved::Other);
                }
                0x11 => {
                    let reg = r.uleb()?;
                    let off = r.sleb()?;
                    state.set(reg, Saved::At(off.wrapping_mul(data_align)));
                }
                0x12 => {
                    state.cfa_reg = r.uleb()?;
                    state.cfa_offset = r.sleb()?.wrapping_mul(data_align);
                    state.cfa_computed = false;
                }
                0x13 => state.cfa_offset = r.sleb()?.wrapping_mul(data_align),
                0x14 => {
                    let reg = r.uleb()?;
                    r.uleb()?;
                    state.set(reg, Saved::Other);
                }
                0x15 => {
                    let reg = r.uleb()?;
                    r.sleb()?;
                    state.set(reg, Saved::Other);
                }
                0x2E => {
                    r.uleb()?; // DW_CFA_GNU_args_size: nothing for a walk
                }
                0x2F => {
                    let reg = r.uleb()?;
                    let off = r.uleb()?;
                    state.set(reg, Saved::At(factored(off).wrapping_neg()));
                }
                _ => return None,
            },
        }
        if let Some(delta) = advance {
            *loc = loc.wrapping_add((delta * code_align) as usize);
            if *loc > pc {
                return Some(());
            }
        }
    }
    Some(())
}
