//! The profile file written by the library under `MY_ALLOC_PROFILE=FILE`, and its parser.
//!
//! ```text
//! my_alloc-profile 1
//! program /usr/bin/python3
//! S <t_ms> <in_use_bytes> <heap_bytes_from_os> <resident_bytes>    one per sample, t_ms increasing
//! C <class_index> <class_block_size_bytes> <requests>              at exit, classes with requests
//! E <t_ms>                                                         end marker, at exit
//! R <mean_bytes>                                  header: the stack sampling interval R
//! K <stack_id> <pc_hex> <pc_hex> ...              a call stack, innermost frame first
//! A <t_ms> <size> <stack_id> <addr_hex>           a sampled allocation of <size> requested bytes
//! F <t_ms> <addr_hex>                             the free of the sampled allocation at <addr>
//! M <start_hex> <end_hex> <offset_hex> <path>     an executable file mapping (path: rest of line)
//! P <t_ms>                                        a snapshot taken on demand
//! ```
//!
//! Hex numbers are written without `0x`. The stack-sample lines (`K`, `A`, `F`, `M`, `P`) come in
//! the order the events happened; `S` lines may interleave with them out of time order, so only
//! file order (line numbers) orders the events. A stack is written once, before the first `A`
//! that names it. An address is live from its `A` to the next `F` of that address; an `F` of an
//! address with no live `A` is counted and ignored. `M` lines repeat (at start, at each snapshot,
//! at exit): they are united, a later line with the same start replacing the earlier one.
//!
//! Blank lines and lines starting with `#` are comments. Lines of an unknown kind are ignored, and
//! so are fields after the ones listed above (both for forward compatibility). A file without the
//! `E` line (the program crashed or was killed) is read as far as it goes, with a warning; so is a
//! last line cut short, and an unterminated last stack-sample line is dropped even when it parses
//! (its last field, an address or a path, may be cut). Any other malformed line is an error
//! naming its line number.
//!
//! Well-formed but odd files are read with a warning: samples out of time order (threads of the
//! program sampling at once) are sorted; repeated headers, class lines or end markers (another
//! process wrote to the same file) are merged: class counts added, the latest end kept.

use std::collections::{BTreeMap, HashMap};
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

/// One `K` line: a call stack, innermost frame first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The id `A` lines name it by.
    pub id: u64,
    /// Return addresses, but the first, which may be an instruction pointer in the allocator.
    pub pcs: Vec<u64>,
}

/// When a sampled allocation was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Free {
    pub t_ms: u64,
    /// The `F` line's number (1-based), which orders it among the other events.
    pub line: usize,
}

/// One `A` line: a sampled allocation, with its free if the profile has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alloc {
    pub t_ms: u64,
    /// Requested bytes.
    pub size: u64,
    /// Index into `Profile::stacks`.
    pub stack: usize,
    pub addr: u64,
    /// The line's number (1-based).
    pub line: usize,
    pub free: Option<Free>,
    /// Requested bytes before the resize in place that this sample continues (a `Z` line), or
    /// `None` for an `A` line: the block's estimate is then its pieces' sum.
    pub resized_from: Option<u64>,
}

impl Alloc {
    /// Whether the block is live just after line `line` (its `A` before, no `F` up to it).
    pub fn is_live_after(&self, line: usize) -> bool {
        self.line <= line && self.free.map_or(true, |f| f.line > line)
    }
}

/// One `M` line: an executable file mapped into the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The file offset mapped at `start`.
    pub offset: u64,
    pub path: String,
}

/// One `P` line: a snapshot taken on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub t_ms: u64,
    pub line: usize,
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
    /// The `R` line: the mean sampling interval in bytes; `None` without stack samples.
    pub rate: Option<u64>,
    /// In file order; a stack id written twice (another process) has two entries.
    pub stacks: Vec<Stack>,
    /// Sampled allocations, in file order.
    pub allocs: Vec<Alloc>,
    /// The union of the `M` lines, sorted by start.
    pub mappings: Vec<Mapping>,
    /// In file order.
    pub snapshots: Vec<Snapshot>,
    /// `F` lines of addresses with no live sampled allocation, ignored.
    pub stray_frees: u64,
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

    /// Whether the profile holds allocation stack samples (an `R` line).
    pub fn has_stack_samples(&self) -> bool {
        self.rate.is_some()
    }
}

/// Kinds of the stack-sample lines, whose unterminated last line is dropped even when it parses.
const STACK_KINDS: [&str; 7] = ["R", "K", "A", "F", "Z", "M", "P"];

/// What the stack-sample lines refer to while the file is read.
#[derive(Default)]
struct Tracker {
    /// Stack id to index in `Profile::stacks`: the latest `K` line of that id.
    stacks: HashMap<u64, usize>,
    /// Address to index in `Profile::allocs` of the sampled block live there.
    live: HashMap<u64, usize>,
    /// The `M` lines so far by start.
    mappings: BTreeMap<u64, Mapping>,
    /// `A` lines at an address still live: the earlier block's free was not recorded.
    reused: usize,
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
    let mut tracker = Tracker::default();
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

        if cut_short && profile.end_ms.is_none() && STACK_KINDS.contains(&kind) {
            warnings.push(format!(
                "line {number} is cut short (the file ends in it); ignored"
            ));
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
            "R" => numbers::<1>(&mut fields, "R <mean_bytes>").and_then(|[rate]| {
                if rate == 0 {
                    return Err("the sampling interval R must be at least 1 byte".to_string());
                }
                match profile.rate {
                    None => profile.rate = Some(rate),
                    Some(first) if first != rate => several = true,
                    Some(_) => {}
                }
                Ok(())
            }),
            "K" => stack_line(&mut fields, &mut profile, &mut tracker, &mut several),
            "A" => alloc_line(&mut fields, number, &mut profile, &mut tracker),
            "F" => free_line(&mut fields, number, &mut profile, &mut tracker),
            "Z" => resize_line(&mut fields, number, &mut profile, &mut tracker),
            "M" => mapping_line(trimmed, &mut tracker),
            "P" => numbers::<1>(&mut fields, "P <t_ms>")
                .map(|[t_ms]| profile.snapshots.push(Snapshot { t_ms, line: number })),
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
    profile.mappings = tracker.mappings.into_values().collect();
    if profile.stray_frees > 0 {
        let n = profile.stray_frees;
        warnings.push(format!(
            "{n} free{} (F line{}) of an address with no live sampled allocation; ignored",
            if n == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" }
        ));
    }
    if tracker.reused > 0 {
        let n = tracker.reused;
        warnings.push(format!(
            "{n} sampled allocation{} at an address still live (its free was not recorded): \
             the earlier block taken as freed then",
            if n == 1 { "" } else { "s" }
        ));
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

/// A `K` line: the stack's id and its pcs (none if the program's stack could not be walked).
fn stack_line<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    profile: &mut Profile,
    tracker: &mut Tracker,
    several: &mut bool,
) -> Result<(), String> {
    const USAGE: &str = "K <stack_id> <pc_hex> <pc_hex> ...";
    let [id] = numbers::<1>(fields, USAGE)?;
    let pcs = fields
        .map(|f| hex(f, USAGE))
        .collect::<Result<Vec<u64>, String>>()?;
    if let Some(&known) = tracker.stacks.get(&id) {
        if profile.stacks[known].pcs == pcs {
            return Ok(());
        }
        // The same id for another stack: another process numbering its own stacks.
        *several = true;
    }
    tracker.stacks.insert(id, profile.stacks.len());
    profile.stacks.push(Stack { id, pcs });
    Ok(())
}

/// An `A` line: a sampled allocation, live at its address from now on.
fn alloc_line<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    number: usize,
    profile: &mut Profile,
    tracker: &mut Tracker,
) -> Result<(), String> {
    const USAGE: &str = "A <t_ms> <size> <stack_id> <addr_hex>";
    let [t_ms, size, id] = numbers::<3>(fields, USAGE)?;
    let addr = address(fields, USAGE)?;
    if profile.rate.is_none() {
        return Err("a sampled allocation before the R line (the sampling interval)".to_string());
    }
    let stack = *tracker
        .stacks
        .get(&id)
        .ok_or_else(|| format!("stack {id} has no K line before this one"))?;
    begin_sample(
        profile,
        tracker,
        Alloc {
            t_ms,
            size,
            stack,
            addr,
            line: number,
            free: None,
            resized_from: None,
        },
    );
    Ok(())
}

/// An `F` line: the end of the sampled allocation live at its address, if there is one.
fn free_line<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    number: usize,
    profile: &mut Profile,
    tracker: &mut Tracker,
) -> Result<(), String> {
    const USAGE: &str = "F <t_ms> <addr_hex>";
    let [t_ms] = numbers::<1>(fields, USAGE)?;
    let addr = address(fields, USAGE)?;
    match tracker.live.remove(&addr) {
        Some(index) => profile.allocs[index].free = Some(Free { t_ms, line: number }),
        None => profile.stray_frees += 1,
    }
    Ok(())
}

/// A `Z` line: the sampled block live at the old address was resized in place. Its sample ends
/// here and continues as a new one at the new address and size, with the same stack.
fn resize_line<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    number: usize,
    profile: &mut Profile,
    tracker: &mut Tracker,
) -> Result<(), String> {
    const USAGE: &str = "Z <t_ms> <old_hex> <new_hex> <size>";
    let [t_ms] = numbers::<1>(fields, USAGE)?;
    let (old, new) = (address(fields, USAGE)?, address(fields, USAGE)?);
    let [size] = numbers::<1>(fields, USAGE)?;
    let Some(index) = tracker.live.remove(&old) else {
        profile.stray_frees += 1;
        return Ok(());
    };
    let before = profile.allocs[index];
    profile.allocs[index].free = Some(Free { t_ms, line: number });
    begin_sample(
        profile,
        tracker,
        Alloc {
            t_ms,
            size,
            stack: before.stack,
            addr: new,
            line: number,
            free: None,
            resized_from: Some(before.size),
        },
    );
    Ok(())
}

/// The next field, an address in hex.
fn address<'a>(fields: &mut impl Iterator<Item = &'a str>, usage: &str) -> Result<u64, String> {
    hex(
        fields
            .next()
            .ok_or_else(|| format!("expected '{usage}': no address"))?,
        usage,
    )
}

/// A sample live at its address from now on; a sample still live there ends here (its free was
/// not recorded).
fn begin_sample(profile: &mut Profile, tracker: &mut Tracker, alloc: Alloc) {
    if let Some(earlier) = tracker.live.insert(alloc.addr, profile.allocs.len()) {
        tracker.reused += 1;
        profile.allocs[earlier].free = Some(Free {
            t_ms: alloc.t_ms,
            line: alloc.line,
        });
    }
    profile.allocs.push(alloc);
}

/// An `M` line: three hex numbers, then the path, which is the rest of the line (spaces and all).
fn mapping_line(line: &str, tracker: &mut Tracker) -> Result<(), String> {
    const USAGE: &str = "M <start_hex> <end_hex> <offset_hex> <path>";
    let mut rest = &line[1..];
    let mut numbers = [0u64; 3];
    for (k, slot) in numbers.iter_mut().enumerate() {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("expected '{USAGE}': only {k} of 3 numbers"));
        }
        *slot = hex(&rest[..end], USAGE)?;
        rest = &rest[end..];
    }
    // One separator, so that a path that starts with a space keeps it.
    let path = rest
        .strip_prefix(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest);
    let [start, end, offset] = numbers;
    if path.trim().is_empty() {
        return Err(format!("expected '{USAGE}': no path"));
    }
    if end <= start {
        return Err(format!(
            "the mapping ends ({end:x}) before it starts ({start:x})"
        ));
    }
    tracker.mappings.insert(
        start,
        Mapping {
            start,
            end,
            offset,
            path: path.to_string(),
        },
    );
    Ok(())
}

/// A hex number as the library writes it: digits only, no `0x`.
fn hex(field: &str, usage: &str) -> Result<u64, String> {
    u64::from_str_radix(field, 16)
        .ok()
        .filter(|_| field.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("expected '{usage}': '{field}' is not a hex number"))
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

    const STACKS: &str = "\
my_alloc-profile 1
program ./demo
R 524288
M 55d0a0000000 55d0a0010000 1000 /usr/bin/demo
M 7f0000000000 7f0000100000 0 /opt/my lib/libx.so
K 1 55d0a0001234 55d0a0005678
A 3 100 1 7f1000000010
K 2 55d0a0009abc
S 1 0 0 0
A 4 4096 2 7f1000001000
F 5 7f1000000010
P 6
F 7 7f1000001000
A 8 200 1 7f1000000010
M 55d0a0000000 55d0a0020000 1000 /usr/bin/demo
E 9
";

    #[test]
    fn stack_samples_are_read() {
        let p = parse(STACKS).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let p = p.profile;
        assert!(p.has_stack_samples());
        assert_eq!(p.rate, Some(524288));
        assert_eq!(
            p.stacks,
            vec![
                Stack {
                    id: 1,
                    pcs: vec![0x55d0a0001234, 0x55d0a0005678]
                },
                Stack {
                    id: 2,
                    pcs: vec![0x55d0a0009abc]
                }
            ]
        );
        assert_eq!(p.allocs.len(), 3);
        assert_eq!(
            p.allocs[0],
            Alloc {
                t_ms: 3,
                size: 100,
                stack: 0,
                addr: 0x7f1000000010,
                line: 7,
                free: Some(Free { t_ms: 5, line: 11 }),
                resized_from: None,
            }
        );
        assert_eq!(p.allocs[1].stack, 1);
        assert_eq!(p.allocs[1].free, Some(Free { t_ms: 7, line: 13 }));
        // The address is reused after its free: a new block, live at the end.
        assert_eq!(p.allocs[2].addr, 0x7f1000000010);
        assert_eq!(p.allocs[2].free, None);
        assert_eq!(p.snapshots, vec![Snapshot { t_ms: 6, line: 12 }]);
        let live: Vec<bool> = p.allocs.iter().map(|a| a.is_live_after(12)).collect();
        assert_eq!(live, vec![false, true, false]);
        // United, sorted by start; the later line with the same start replaced the earlier.
        assert_eq!(
            p.mappings,
            vec![
                Mapping {
                    start: 0x55d0a0000000,
                    end: 0x55d0a0020000,
                    offset: 0x1000,
                    path: "/usr/bin/demo".to_string()
                },
                Mapping {
                    start: 0x7f0000000000,
                    end: 0x7f0000100000,
                    offset: 0,
                    path: "/opt/my lib/libx.so".to_string()
                }
            ]
        );
        assert_eq!(p.stray_frees, 0);
        // A profile without them has none.
        assert!(!parse(GOOD).unwrap().profile.has_stack_samples());
    }

    #[test]
    fn a_resize_in_place_continues_the_sample() {
        // 100 bytes at a grow to 300 in place, then move to b as 500 (its free ends them).
        let text = "my_alloc-profile 1\nR 1\nK 1 10\nA 1 100 1 a\nZ 2 a a 300\nZ 3 a b 500\n\
                    Z 4 c c 9\nF 5 b\nE 6\n";
        let p = parse(text).unwrap().profile;
        let sizes: Vec<(u64, u64, Option<u64>)> = p
            .allocs
            .iter()
            .map(|a| (a.addr, a.size, a.resized_from))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (0xa, 100, None),
                (0xa, 300, Some(100)),
                (0xb, 500, Some(300))
            ]
        );
        // Each piece ends where the next begins; only one is live at a time.
        assert_eq!(p.allocs[0].free.map(|f| f.line), Some(5));
        assert_eq!(p.allocs[1].free.map(|f| f.line), Some(6));
        assert_eq!(p.allocs[2].free.map(|f| f.line), Some(8));
        for line in 4..8 {
            assert_eq!(
                p.allocs.iter().filter(|a| a.is_live_after(line)).count(),
                1,
                "line {line}"
            );
        }
        assert!(p.allocs.iter().all(|a| a.stack == 0));
        // A resize of an address with no live sample is a stray.
        assert_eq!(p.stray_frees, 1);
    }

    #[test]
    fn stray_frees_and_reused_addresses_are_counted_with_one_warning_each() {
        let text = "my_alloc-profile 1\nR 4096\nK 1 10\nF 1 abc\nF 2 abd\nA 3 8 1 10\n\
                    A 4 8 1 10\nF 5 10\nF 6 10\nE 7\n";
        let p = parse(text).unwrap();
        assert_eq!(p.profile.stray_frees, 3);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].starts_with("3 frees (F lines) of an address with no live"),
            "{}",
            p.warnings[0]
        );
        assert!(
            p.warnings[1].contains("1 sampled allocation at an address still live"),
            "{}",
            p.warnings[1]
        );
        let frees: Vec<Option<usize>> = p
            .profile
            .allocs
            .iter()
            .map(|a| a.free.map(|f| f.line))
            .collect();
        assert_eq!(frees, vec![Some(7), Some(8)]);
    }

    #[test]
    fn a_stack_id_written_again_by_another_process() {
        let text = "my_alloc-profile 1\nR 4096\nK 1 10\nA 1 8 1 100\nK 1 10\nK 1 20 30\n\
                    A 2 8 1 200\nE 3\n";
        let p = parse(text).unwrap();
        assert_eq!(p.profile.stacks.len(), 2);
        assert_eq!(p.profile.allocs[0].stack, 0);
        assert_eq!(p.profile.allocs[1].stack, 1);
        assert!(
            p.warnings[0].contains("more than one process"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn malformed_stack_lines_name_their_line() {
        let head = "my_alloc-profile 1\nR 4096\nK 1 10 20\n";
        for (line, want) in [
            ("R 0", "at least 1 byte"),
            ("R x", "'x' is not an unsigned number"),
            ("K 2 10 0x20", "'0x20' is not a hex number"),
            ("K x 10", "'x' is not an unsigned number"),
            ("A 1 8 7 100", "stack 7 has no K line before this one"),
            ("A 1 8 1", "no address"),
            ("A 1 8 1 10g", "'10g' is not a hex number"),
            ("A 1 -8 1 10", "'-8' is not an unsigned number"),
            ("F 1", "no address"),
            ("F 1 +10", "'+10' is not a hex number"),
            ("M 10 20 0", "no path"),
            ("M 10 20", "only 2 of 3 numbers"),
            ("M 10 2z 0 /bin/x", "'2z' is not a hex number"),
            ("M 20 10 0 /bin/x", "ends (10) before it starts (20)"),
            ("P", "only 0 of 1 numbers"),
        ] {
            let e = error_of(&format!("{head}{line}\nE 5\n"));
            assert_eq!(e.line, 4, "{line}: {e}");
            assert!(e.message.contains(want), "{line}: {e}");
        }
        // Samples need the sampling interval before them.
        let e = error_of("my_alloc-profile 1\nK 1 10\nA 1 8 1 100\nE 2\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("before the R line"), "{e}");
    }

    #[test]
    fn a_cut_short_stack_line_is_dropped_even_if_it_parses() {
        for last in [
            "A 1 8 1 7f0",
            "A 1 8 9",
            "K 2 10 2",
            "M 10 20 0 /usr/li",
            "F 3 7f",
            "P 4",
        ] {
            let text = format!("my_alloc-profile 1\nR 4096\nK 1 10\nA 1 8 1 7f00\n{last}");
            let p = parse(&text).unwrap();
            assert_eq!(p.profile.allocs.len(), 1, "{last}");
            assert_eq!(p.profile.allocs[0].free, None, "{last}");
            assert_eq!(p.profile.stacks.len(), 1, "{last}");
            assert!(p.profile.mappings.is_empty(), "{last}");
            assert!(p.profile.snapshots.is_empty(), "{last}");
            assert!(
                p.warnings[0].contains("line 5 is cut short"),
                "{last}: {:?}",
                p.warnings
            );
            assert!(p.warnings[1].contains("no end marker"), "{last}");
        }
        // Terminated, an unknown stack is an error even at the end of a truncated file.
        let e = error_of("my_alloc-profile 1\nR 4096\nA 1 8 9 7f00\n");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn the_stacks_example_file_parses() {
        let text = include_str!("../tests/data/stacks.prof");
        let p = parse(text).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(p.profile.has_stack_samples());
        assert!(!p.profile.allocs.is_empty());
        assert!(!p.profile.snapshots.is_empty());
        assert!(!p.profile.mappings.is_empty());
    }
}
