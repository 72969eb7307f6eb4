//! `my_alloc symbolize`: the stack frames of the library's reports (guarded blocks' faults,
//! misuse of guarded blocks), which it writes as `#i 0xPC PATH+0xOFFSET` because it must not
//! read debug information inside a crashing process, given their function names and lines.

use std::io::{BufRead, Write};

use crate::profile::Mapping;
use crate::symbols::Symbolizer;

/// The file and the offset in it of a report's frame line, if the line is one.
pub fn frame_of(line: &str) -> Option<(&str, u64)> {
    let rest = line
        .trim_start_matches("my_alloc:")
        .trim_start()
        .strip_prefix('#')?;
    let mut words = rest.split_whitespace();
    words.next()?.parse::<u32>().ok()?;
    words.next()?.strip_prefix("0x")?;
    let (path, offset) = words.next()?.rsplit_once("+0x")?;
    Some((path, u64::from_str_radix(offset, 16).ok()?))
}

/// Copies `input` to `output`, each frame line followed by what it is: ` in function (file:line)`,
/// inlined callers on lines of their own.
pub fn symbolize(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut symbolizer = Symbolizer::new();
    for line in input.lines() {
        let line = line?;
        let Some((path, offset)) = frame_of(&line) else {
            writeln!(output, "{line}")?;
            continue;
        };
        // The frame as a mapping of its whole file at 0, so that the pc is the offset.
        let whole = [Mapping {
            start: 0,
            end: u64::MAX,
            offset: 0,
            path: path.to_string(),
        }];
        let location = symbolizer.locate(&whole, offset, true);
        // A frame the file has no name for is left as it was.
        let mut frames = location
            .frames
            .iter()
            .filter(|f| !f.function.ends_with(&format!("+0x{offset:x}")));
        match frames.next() {
            Some(f) => writeln!(output, "{line} in {}", f.describe())?,
            None => writeln!(output, "{line}")?,
        }
        for f in frames {
            writeln!(
                output,
                "{:width$}inlined into {}",
                "",
                f.describe(),
                width = line.len() - line.trim_start().len() + 4
            )?;
        }
    }
    for w in symbolizer.take_warnings() {
        eprintln!("my_alloc: symbolize: warning: {w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_are_recognised() {
        assert_eq!(
            frame_of("my_alloc:     #3 0x55d0a0001234 /usr/bin/demo+0x1234"),
            Some(("/usr/bin/demo", 0x1234))
        );
        assert_eq!(
            frame_of("my_alloc:     #0 0x7f00 /opt/my lib/x.so+0xff"),
            None,
            "paths with spaces are cut at the space"
        );
        assert_eq!(
            frame_of("my_alloc:     #1 0x7f00"),
            None,
            "a frame in no file"
        );
        assert_eq!(frame_of("my_alloc:   allocated by thread 12:"), None);
        assert_eq!(
            frame_of("#2 0x10 /bin/true+0x10"),
            Some(("/bin/true", 0x10))
        );
    }

    #[test]
    fn a_frame_of_this_test_program_gets_a_name() {
        // A return address inside this very function, as the report would print it.
        let exe = std::env::current_exe().unwrap();
        let mut maps = String::new();
        std::io::Read::read_to_string(
            &mut std::fs::File::open("/proc/self/maps").unwrap(),
            &mut maps,
        )
        .unwrap();
        let here = a_frame_of_this_test_program_gets_a_name as usize as u64 + 4;
        let exe = exe.to_str().unwrap();
        let offset = maps
            .lines()
            .filter(|l| l.ends_with(exe))
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (s, e) = f[0].split_once('-')?;
                let (s, e) = (
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                );
                (s <= here && here < e).then(|| here - s + u64::from_str_radix(f[2], 16).unwrap())
            })
            .unwrap();
        let report = format!(
            "my_alloc:   allocated by thread 1:\nmy_alloc:     #0 0x{here:x} {exe}+0x{offset:x}\n"
        );
        let mut out = Vec::new();
        symbolize(report.as_bytes(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("my_alloc:   allocated by thread 1:\n"),
            "{out}"
        );
        assert!(
            out.contains("a_frame_of_this_test_program_gets_a_name"),
            "{out}"
        );
    }
}
