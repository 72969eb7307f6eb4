//! Sizes written as text: digits with an optional `K`, `M` or `G` suffix (powers of 1024).
//!
//! Shared by the library's options (`MY_ALLOC_MMAP_THRESHOLD=256K`) and the `my_alloc` command
//! (`--mmap-threshold 256K`), which includes this file, so that both accept exactly the same
//! spellings. Depends on nothing.

/// Parses `value` (`4096`, `64k`, `2M`, `1g`); `None` for anything else or on overflow.
pub fn parse_size(value: &[u8]) -> Option<usize> {
    let (digits, unit) = match value.last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1usize << 10),
        b'm' | b'M' => (&value[..value.len() - 1], 1 << 20),
        b'g' | b'G' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"64k"), Some(64 << 10));
        assert_eq!(parse_size(b"2M"), Some(2 << 20));
        assert_eq!(parse_size(b"1g"), Some(1 << 30));
        for bad in [&b""[..], b"k", b"12x", b"-5", b"99999999999999999999999", b"1 M", b"16G0"] {
            assert_eq!(parse_size(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
