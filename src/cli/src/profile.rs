//! The profile file written by the library under `MY_ALLOC_PROFILE=FILE`, and its parser.
//!
//! ```text
//! my_alloc-profile 1
//! program /usr/bin/python3
//! S <t_ms> <in_use_bytes> <heap_bytes_from_os> <resident_bytes>    one per sample, t_ms increasing
//! C <class_index> <class_block_size_bytes> <requests>              at exit, classes with requests
//! E <t_ms>                                                         end marker, at exit
//! ```
//!
//! Blank lines and lines starting with `#` are comments. Lines of an unknown kind are ignored, and
//! so are fields after the ones listed above (both for forward compatibility). A file without the
//! `E` line (the program crashed or was killed) is read as far as it goes, with a warning; so is a
//! last line cut short. Any other malformed line is an error naming its line number.
//!
//! Well-formed but odd files are read with a warning: samples out of time order (threads of the
//! program sampling at once) are sorted; repeated headers, class lines or end markers (another
//! process wrote to the same file) are merged: class counts added, the latest end kept.

use std::fmt;

/// The header's first word, and the format version this parser reads.
pub const MAGIC: &str = "my_alloc-profile";
pub const VERSION: u32 = 1;

/// One `S` line: the heap's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since profiling started.
    pub t_ms: u64,
    /// Bytes the program holds (allocated, not yet freed).
    pub in_use: u64,
    /// Bytes the heap has taken from the OS.
    pub heap: u64,
    /// Bytes of the heap resident in memory.
    pub resident: u64,
}

/// One `C` line: how many requests one size class served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCount {
    pub index: u32,
    /// The class's block size in bytes; 0 for blocks with their own mapping.
    pub block_size: u64,
    pub requests: u64,
}

impl ClassCount {
    pub fn is_mapped(&self) -> bool {
        self.block_size == 0
    }
}

/// A parsed profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The `program` line, if any.
    pub program: Option<String>,
    pub samples: Vec<Sample>,
    /// In file order.
    pub classes: Vec<ClassCount>,
    /// The `E` line's time; `None` when the profile is truncated.
    pub end_ms: Option<u64>,
}

impl Profile {
    /// Whether the file ended before the end marker.
    pub fn is_truncated(&self) -> bool {
        self.end_ms.is_none()
    }

    /// The profile's length: the end marker's time, else the last sample's.
    pub fn duration_ms(&self) -> u64 {
        let last = self.samples.last().map_or(0, |s| s.t_ms);
        self.end_ms.map_or(last, |e| e.max(last))
    }

    pub fn total_requests(&self) -> u64 {
        self.classes.iter().map(|c| c.requests).sum()
    }
}

/// A parse that succeeded, with what the reader should be warned about.
#[derive(Debug)]
pub struct Parsed {
    pub profile: Profile,
    pub warnings: Vec<String>,
}

/// Why a file is not a readable profile. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a profile's text.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut profile = Profile::default();
    let mut warnings = Vec::new();
    let mut seen_header = false;
    // Samples written out of time order (two threads sampling at once).
    let mut out_of_order = 0usize;
    // Whether more than one process wrote to the file (a program the profiled one started
    // inherits MY_ALLOC_PROFILE).
    let mut several = false;
    let ends_with_newline = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();

    for (i, raw) in lines.iter().enumerate() {
        let number = i + 1;
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // The writer ends every line with a newline: an unterminated last line that does not
        // parse is a write cut short (the program died), not a malformed file.
        let cut_short = number == lines.len() && !ends_with_newline;
        let err = |message: String| ParseError {
            line: number,
            message,
        };

        let mut fields = trimmed.split_ascii_whitespace();
        let kind = fields.next().unwrap_or("");
        if !seen_header {
            if kind != MAGIC {
                return Err(err(format!(
                    "not a my_alloc profile: the first line should be '{MAGIC} {VERSION}'"
                )));
            }
            match fields.next().map(str::parse::<u32>) {
                Some(Ok(VERSION)) => {}
                Some(Ok(v)) => {
                    return Err(err(format!(
                        "profile format version {v} is not supported (this my_alloc reads version {VERSION})"
                    )))
                }
                _ => return Err(err(format!("malformed header: expected '{MAGIC} {VERSION}'"))),
            }
            seen_header = true;
            continue;
        }

        let result = match kind {
            // A second header: another process opened the same profile and wrote to it too.
            MAGIC => {
                several = true;
                Ok(())
            }
            "program" => {
                let name = trimmed["program".len()..].trim();
                match &profile.program {
                    None if !name.is_empty() => profile.program = Some(name.to_string()),
                    Some(first) if first != name => several = true,
                    _ => {}
                }
                Ok(())
            }
            "S" => numbers::<4>(
                &mut fields,
                "S <t_ms> <in_use_bytes> <heap_bytes> <resident_bytes>",
            )
            .map(|[t_ms, in_use, heap, resident]| {
                if profile.samples.last().is_some_and(|prev| t_ms < prev.t_ms) {
                    out_of_order += 1;
                }
                profile.samples.push(Sample {
                    t_ms,
                    in_use,
                    heap,
                    resident,
                });
            }),
            "C" => numbers::<3>(&mut fields, "C <class_index> <block_size_bytes> <requests>")
                .and_then(|[index, block_size, requests]| {
                    let index = u32::try_from(index)
                        .map_err(|_| format!("class index {index} is too large"))?;
                    match profile.classes.iter_mut().find(|c| c.index == index) {
                        Some(c) => {
                            several = true;
                            c.requests = c.requests.saturating_add(requests);
                        }
                        None => profile.classes.push(ClassCount {
                            index,
                            block_size,
                            requests,
                        }),
                    }
                    Ok(())
                }),
            "E" => numbers::<1>(&mut fields, "E <t_ms>").map(|[t_ms]| {
                if profile.end_ms.is_some() {
                    several = true;
                }
                profile.end_ms = Some(profile.end_ms.map_or(t_ms, |e| e.max(t_ms)));
            }),
            // Another kind of line, from a later version of the library: not ours to judge.
            _ => Ok(()),
        };
        if let Err(message) = result {
            if cut_short && profile.end_ms.is_none() {
                warnings.push(format!(
                    "line {number} is cut short (the file ends in it); ignored"
                ));
            } else {
                return Err(err(message));
            }
        }
    }

    if !seen_header {
        return Err(ParseError {
            line: lines.len().max(1),
            message: format!("empty: no '{MAGIC} {VERSION}' header"),
        });
    }
    if out_of_order > 0 {
        profile.samples.sort_by_key(|s| s.t_ms);
        warnings.push(format!(
            "{out_of_order} sample{} out of time order (threads sampling at once?); sorted",
            if out_of_order == 1 { " was" } else { "s were" }
        ));
    }
    if several {
        warnings.push(
            "more than one process wrote to this profile (programs started by the profiled one \
             inherit MY_ALLOC_PROFILE): the samples mix them, and the class counts are their sums"
                .to_string(),
        );
    }
    if profile.end_ms.is_none() {
        warnings.push(format!(
            "no end marker (E line): the profile is truncated (did the program crash or get killed?); \
             using the {} sample{} it holds",
            profile.samples.len(),
            if profile.samples.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(Parsed { profile, warnings })
}

/// The next `N` fields as unsigned decimal numbers; `usage` describes the line for errors.
fn numbers<'a, const N: usize>(
    fields: &mut impl Iterator<Item = &'a str>,
    usage: &str,
) -> Result<[u64; N], String> {
    let mut out = [0u64; N];
    for (k, slot) in out.iter_mut().enumerate() {
        let field = fields
            .next()
            .ok_or_else(|| format!("expected '{usage}': only {k} of {N} numbers"))?;
        *slot = field
            .parse::<u64>()
            .ok()
            .filter(|_| field.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("expected '{usage}': '{field}' is not an unsigned number"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
my_alloc-profile 1
# a comment
program /usr/bin/python3 -X dev
S 0 0 0 0
S 10 1048576 2097152 1572864

S 20 524288 2097152 2097152
C 1 48 1000
C 127 0 3
E 25
";

    #[test]
    fn a_complete_profile() {
        let p = parse(GOOD).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let p = p.profile;
        assert_eq!(p.program.as_deref(), Some("/usr/bin/python3 -X dev"));
        assert_eq!(p.samples.len(), 3);
        assert_eq!(
            p.samples[1],
            Sample {
                t_ms: 10,
                in_use: 1 << 20,
                heap: 2 << 20,
                resident: 1572864
            }
        );
        assert_eq!(
            p.classes,
            vec![
                ClassCount {
                    index: 1,
                    block_size: 48,
                    requests: 1000
                },
                ClassCount {
                    index: 127,
                    block_size: 0,
                    requests: 3
                }
            ]
        );
        assert!(p.classes[1].is_mapped());
        assert_eq!(p.end_ms, Some(25));
        assert!(!p.is_truncated());
        assert_eq!(p.duration_ms(), 25);
        assert_eq!(p.total_requests(), 1003);
    }

    #[test]
    fn crlf_line_ends_and_no_program() {
        let p = parse("my_alloc-profile 1\r\nS 1 2 3 4\r\nE 1\r\n")
            .unwrap()
            .profile;
        assert_eq!(p.program, None);
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.end_ms, Some(1));
    }

    #[test]
    fn truncated_profile_is_read_with_a_warning() {
        let text = "my_alloc-profile 1\nprogram x\nS 0 1 2 3\nS 5 4 5 6\n";
        let p = parse(text).unwrap();
        assert!(p.profile.is_truncated());
        assert_eq!(p.profile.samples.len(), 2);
        assert_eq!(p.profile.duration_ms(), 5);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("no end marker"), "{}", p.warnings[0]);
    }

    #[test]
    fn last_line_cut_short_is_ignored_with_a_warning() {
        let p = parse("my_alloc-profile 1\nS 0 1 2 3\nS 5 4").unwrap();
        assert_eq!(p.profile.samples.len(), 1);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("line 3 is cut short"),
            "{}",
            p.warnings[0]
        );
        // An unterminated last line that is whole is kept.
        let p = parse("my_alloc-profile 1\nS 0 1 2 3\nE 7").unwrap();
        assert!(p.warnings.is_empty());
        assert_eq!(p.profile.end_ms, Some(7));
    }

    #[test]
    fn unknown_kinds_and_extra_fields_are_ignored() {
        let text = "my_alloc-profile 1\nX whatever 1 2\nT 5 threads\nS 0 1 2 3 99\nC 3 64 7 extra\nE 1 more\n";
        let p = parse(text).unwrap();
        assert!(p.warnings.is_empty());
        assert_eq!(
            p.profile.samples,
            vec![Sample {
                t_ms: 0,
                in_use: 1,
                heap: 2,
                resident: 3
            }]
        );
        assert_eq!(p.profile.classes.len(), 1);
        assert_eq!(p.profile.end_ms, Some(1));
    }

    fn error_of(text: &str) -> ParseError {
        parse(text).expect_err("should not parse")
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let e = error_of("my_alloc-profile 1\nS 0 1 2 3\nS 1 2 x 4\nE 2\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("'x' is not an unsigned number"), "{e}");
        assert!(e.to_string().starts_with("line 3: "), "{e}");

        let e = error_of("my_alloc-profile 1\n# c\nS 0 1 2\nE 2\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("only 3 of 4 numbers"), "{e}");

        let e = error_of("my_alloc-profile 1\nC 1 -16 4\nE 2\n");
        assert_eq!(e.line, 2);

        let e = error_of("my_alloc-profile 1\nC 1 16 +4\nE 2\n");
        assert_eq!(e.line, 2);

        // A bad line in the middle of a truncated file is still an error.
        let e = error_of("my_alloc-profile 1\nS 0 1 2\nS 5 1 2 3");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn samples_out_of_order_are_sorted_with_a_warning() {
        let p = parse("my_alloc-profile 1\nS 10 1 2 3\nS 21 5 6 7\nS 20 4 5 6\nS 30 0 0 0\nE 30\n")
            .unwrap();
        let times: Vec<u64> = p.profile.samples.iter().map(|s| s.t_ms).collect();
        assert_eq!(times, vec![10, 20, 21, 30]);
        assert_eq!(p.profile.samples[1].in_use, 4);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("1 sample was out of time order"),
            "{}",
            p.warnings[0]
        );
    }

    #[test]
    fn several_writers_are_merged_with_a_warning() {
        let text =
            "my_alloc-profile 1\nprogram /bin/sh\nS 0 1 2 3\nmy_alloc-profile 1\nprogram /bin/ls\n\
                    S 1 1 2 3\nC 2 64 10\nE 5\nC 2 64 7\nC 3 80 1\nE 4\n";
        let p = parse(text).unwrap();
        assert_eq!(p.profile.program.as_deref(), Some("/bin/sh"));
        assert_eq!(p.profile.end_ms, Some(5));
        assert_eq!(
            p.profile.classes,
            vec![
                ClassCount {
                    index: 2,
                    block_size: 64,
                    requests: 17
                },
                ClassCount {
                    index: 3,
                    block_size: 80,
                    requests: 1
                }
            ]
        );
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("more than one process"),
            "{}",
            p.warnings[0]
        );
    }

    #[test]
    fn header_is_checked() {
        let e = error_of("");
        assert!(e.message.contains("header"), "{e}");
        let e = error_of("# only a comment\n\n");
        assert!(e.message.contains("header"), "{e}");
        let e = error_of("hello\nS 0 1 2 3\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("not a my_alloc profile"), "{e}");
        let e = error_of("# comment first\nmy_alloc-profile 2\nE 1\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("version 2 is not supported"), "{e}");
        let e = error_of("my_alloc-profile one\n");
        assert!(e.message.contains("malformed header"), "{e}");
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../tests/data/example.prof");
        let p = parse(text).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(p.profile.samples.len() >= 20);
        assert!(p.profile.classes.iter().any(ClassCount::is_mapped));
        assert!(p.profile.end_ms.is_some());
    }
}
