//! The process's code mappings, read from /proc/self/maps: what the `my_alloc` command needs to
//! turn a recorded return address into a file and an offset in it, and so into a name. Read
//! with a stack buffer and plain read(2); nothing is allocated.

use crate::os;

/// One mapping of a file with execute permission.
pub struct Mapping<'a> {
    pub start: usize,
    pub end: usize,
    /// Offset in the file of the mapping's first byte.
    pub offset: usize,
    pub path: &'a [u8],
}

/// Bytes of /proc/self/maps read at a time, and the longest line kept (longer ones, paths of
/// hundreds of bytes, are skipped).
const CHUNK: usize = 4096;
const LINE_MAX: usize = 512;

/// Calls `f` for each executable file mapping.
pub fn for_each_code_mapping(mut f: impl FnMut(&Mapping)) {
    let Some(fd) = os::open_read(c"/proc/self/maps") else { return };
    let mut chunk = [0u8; CHUNK];
    let mut line = [0u8; LINE_MAX];
    let (mut len, mut too_long) = (0, false);
    loop {
        let n = os::read(fd, &mut chunk);
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'\n' {
                if !too_long {
                    if let Some(m) = parse(&line[..len]) {
                        f(&m);
                    }
                }
                (len, too_long) = (0, false);
            } else if len < LINE_MAX {
                line[len] = b;
                len += 1;
            } else {
                too_long = true;
            }
        }
    }
    os::close(fd);
}

/// The mapping containing `addr`, if it is a file's: (start, end, path length) of it, its path
/// copied into `path`.
pub fn find(addr: usize, path: &mut [u8]) -> Option<(usize, usize, usize)> {
    let mut found = None;
    for_each_code_mapping(|m| {
        if found.is_none() && (m.start..m.end).contains(&addr) && m.path.len() <= path.len() {
            path[..m.path.len()].copy_from_slice(m.path);
            found = Some((m.start, m.end, m.path.len()));
        }
    });
    found
}

/// Where the code address `addr` lies: its file's path copied into `path` (the path's length
/// returned), and its offset in that file.
pub fn locate(addr: usize, path: &mut [u8]) -> Option<(usize, usize)> {
    let mut found = None;
    for_each_code_mapping(|m| {
        if found.is_none() && (m.start..m.end).contains(&addr) && m.path.len() <= path.len() {
            path[..m.path.len()].copy_from_slice(m.path);
            found = Some((m.path.len(), addr - m.start + m.offset));
        }
    });
    found
}

/// `start-end perms offset dev inode path`, for executable mappings of files (paths begin
/// with `/`; `[vdso]` and anonymous memory have nothing to resolve against).
fn parse(line: &[u8]) -> Option<Mapping<'_>> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = hex(fields.next()?)?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = trim_start(fields.next()?);
    if perms.get(2) != Some(&b'x') || path.first() != Some(&b'/') {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    Some(Mapping { start: hex(&range[..dash])?, end: hex(&range[dash + 1..])?, offset, path })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s.iter().take_while(|&&b| b == b' ').count();
    &s[skip..]
}

fn hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0usize, |v, &b| Some(v << 4 | (b as char).to_digit(16)? as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_code_mappings_parse() {
        let m = parse(b"55d0c0a00000-55d0c0a41000 r-xp 00012000 fe:01 1312      /usr/bin/python3.11").unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x55d0c0a00000, 0x55d0c0a41000, 0x12000));
        assert_eq!(m.path, b"/usr/bin/python3.11");
        let spaced = parse(b"7f00-7f10 r-xp 0 0:0 1 /tmp/a dir/lib x.so").unwrap();
        assert_eq!(spaced.path, b"/tmp/a dir/lib x.so");
        assert!(parse(b"7f00-7f10 r--p 00000000 fe:01 1312 /usr/lib/libc.so.6").is_none());
        assert!(parse(b"7ffd-7ffe r-xp 00000000 00:00 0                          [vdso]").is_none());
        assert!(parse(b"7ffd-7ffe rw-p 00000000 00:00 0").is_none());
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn this_process_has_its_own_code_mapped() {
        let here = lines_of_code_mappings_parse as *const () as usize;
        let mut path = [0u8; 512];
        let (start, end, len) = find(here, &mut path).expect("the test binary's code is a file mapping");
        assert!(start <= here && here < end);
        assert!(std::path::Path::new(std::str::from_utf8(&path[..len]).unwrap()).exists());
        let mut count = 0;
        for_each_code_mapping(|_| count += 1);
        assert!(count >= 2, "the test binary and libc at least: {count}");
    }
}
