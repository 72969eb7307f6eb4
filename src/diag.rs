//! Diagnostics: one-line messages built in a stack buffer and written with write(2).
//!
//! Nothing here allocates or uses `core::fmt` (whose machinery can panic); numbers are formatted
//! by hand.

use crate::os;

/// Text being built on the stack, `N` bytes at most; text beyond its capacity is dropped.
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

/// A diagnostic or profile line.
pub type Line = Text<256>;

impl<const N: usize> Text<N> {
    /// An empty text.
    pub const fn new() -> Self {
        Text { buf: [0; N], len: 0 }
    }

    /// Appends text.
    pub fn str(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends a number in decimal.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // The digits are ASCII, so this cannot fail; an empty string is the harmless fallback.
        self.str(core::str::from_utf8(&digits[i..]).unwrap_or(""))
    }

    /// Appends a number in hexadecimal with a `0x` prefix.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        self.str("0x").hex_digits(v)
    }

    /// Appends a number in lowercase hexadecimal, without a prefix.
    pub fn hex_digits(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.str(core::str::from_utf8(&digits[i..]).unwrap_or(""))
    }

    /// Appends a number in decimal with a binary unit (B, KiB, MiB, GiB) and one decimal.
    pub fn bytes(&mut self, v: u64) -> &mut Self {
        const UNITS: [&str; 4] = [" B", " KiB", " MiB", " GiB"];
        let mut unit = 0;
        let mut scaled = v * 10;
        while scaled >= 10 * 1024 && unit < UNITS.len() - 1 {
            scaled /= 1024;
            unit += 1;
        }
        self.dec(scaled / 10);
        if unit > 0 {
            self.str(".").dec(scaled % 10);
        }
        self.str(UNITS[unit])
    }

    /// Pads with spaces to `col` characters.
    pub fn pad_to(&mut self, col: usize) -> &mut Self {
        while self.len < col && self.len < self.buf.len() {
            self.buf[self.len] = b' ';
            self.len += 1;
        }
        self
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        N - self.len
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text so far, as a string.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Writes the line and a newline to file descriptor `fd`.
    pub fn write_to(&mut self, fd: i32) {
        self.str("\n");
        os::write_fd(fd, self.as_bytes());
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Reports heap corruption or misuse detected in `func` about pointer `ptr`, then aborts. In the
/// crate's own unit tests it panics instead, so that a test can assert the diagnosis.
#[cold]
#[inline(never)]
pub fn fatal(func: &str, what: &str, ptr: usize) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" ").hex(ptr as u64);
    fatal_line(&mut l)
}

/// As [`fatal`], naming the size class of the block as well.
#[cold]
#[inline(never)]
pub fn fatal_sized(func: &str, what: &str, ptr: usize, block_size: usize) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" ").hex(ptr as u64);
    l.str(" (size class ").dec(block_size as u64).str(")");
    fatal_line(&mut l)
}

/// As [`fatal`], naming a second address: `(<label> <other>)`.
#[cold]
#[inline(never)]
pub fn fatal_at(func: &str, what: &str, ptr: usize, label: &str, other: usize) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" ").hex(ptr as u64);
    l.str(" (").str(label).str(" ").hex(other as u64).str(")");
    fatal_line(&mut l)
}

/// As [`fatal`], with two numbers: `(<a> <label> <b>)`.
#[cold]
#[inline(never)]
pub fn fatal_detail(func: &str, what: &str, ptr: usize, label: &str, a: u64, b: u64) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: ").str(func).str("(): ").str(what).str(" ").hex(ptr as u64);
    l.str(" (").dec(a).str(" ").str(label).str(" ").dec(b).str(")");
    fatal_line(&mut l)
}

/// Reports a broken heap invariant found by the check that debug builds run after every
/// operation, then aborts (panics in the crate's own tests).
#[cold]
#[inline(never)]
pub fn fatal_invariant(what: &str) -> ! {
    let mut l = Line::new();
    l.str("my_alloc: heap check failed: ").str(what);
    fatal_line(&mut l)
}

#[cold]
fn fatal_line(l: &mut Line) -> ! {
    #[cfg(test)]
    {
        panic!("{}", l.as_str());
    }
    #[cfg(not(test))]
    {
        l.write_to(2);
        os::abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut l = Line::new();
        l.dec(0).str(" ").dec(18446744073709551615).str(" ").hex(0xdead_beef).str(" ").hex(0);
        assert_eq!(l.as_str(), "0 18446744073709551615 0xdeadbeef 0x0");
        let mut l = Line::new();
        l.bytes(512).str("|").bytes(1536).str("|").bytes(3 << 30);
        assert_eq!(l.as_str(), "512 B|1.5 KiB|3.0 GiB");
    }

    #[test]
    fn long_lines_are_truncated_not_overflowed() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.str("0123456789");
        }
        assert_eq!(l.as_bytes().len(), 256);
    }
}
