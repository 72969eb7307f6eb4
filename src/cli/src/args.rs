//! The command line as clap reads it: the subcommands, their options, their help, and the checks
//! on option values that can be made before anything runs.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::size_text::parse_size;

/// Help is laid out by hand (no wrapping feature), so every text here keeps its lines short.
const TOP_TEMPLATE: &str = "{name} - {about}\n\n{usage-heading} {usage}\n\n{all-args}{after-help}";
/// A command's help starts with its usage line, as `my_alloc COMMAND --help` always has.
const COMMAND_TEMPLATE: &str =
    "{usage-heading} {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

const TOP_AFTER_HELP: &str = "\
Example:
  my_alloc run --stats --profile py.prof -- python3 script.py
  my_alloc report py.prof          # writes py.svg

'my_alloc COMMAND --help' tells more about a command.";

const RUN_USAGE: &str = "my_alloc run [OPTIONS] [--] PROGRAM [ARGS...]";

const RUN_LONG_ABOUT: &str = "\
Runs PROGRAM with the my_alloc library preloaded (LD_PRELOAD, ahead of any LD_PRELOAD already
set) and the options below passed to it as MY_ALLOC_* environment variables. my_alloc replaces
itself with PROGRAM: the exit status and signals are PROGRAM's own.";

const RUN_AFTER_LONG_HELP: &str = "\
The variable each option sets:
  --stats            MY_ALLOC_STATS=1
  --verbose          MY_ALLOC_VERBOSE=1
  --check            MY_ALLOC_CHECK=1
  --profile FILE     MY_ALLOC_PROFILE=FILE (made absolute)
  --mmap-threshold   MY_ALLOC_MMAP_THRESHOLD=SIZE
  --trim-threshold   MY_ALLOC_TRIM_THRESHOLD=SIZE
  --decay-ms         MY_ALLOC_DECAY_MS=MS

SIZE is a number of bytes, with an optional K, M or G suffix (powers of 1024).
Options go before PROGRAM; everything from PROGRAM on is passed to it unchanged.

The library, if --lib is not given: $MY_ALLOC_LIB, else <dir of my_alloc>/../lib/libmy_alloc.so.0
(installed), else <dir of my_alloc>/libmy_alloc.so (the build tree, target/release/).

Exit status: PROGRAM's; 2 for a usage error; 125 if the library cannot be used; 126 if PROGRAM
cannot be executed; 127 if PROGRAM is not found.

Example:
  my_alloc run --stats --profile py.prof -- python3 script.py";

const REPORT_LONG_ABOUT: &str = "\
Reads a profile recorded by the library (my_alloc run --profile PROFILE, or MY_ALLOC_PROFILE),
draws it as one SVG picture, and prints a summary: duration, peak bytes in use and resident, the
number of requests and the five busiest size classes; with stack samples, what they stand for
and the three stacks with the most bytes still live.

The picture has three panels: (a) requests by size class (one bar per power of two, and one for
blocks with their own mapping), (b) bytes in use and resident over time, (c) fragmentation over
time: bytes resident but not in use.

A profile cut short (the program crashed) is drawn as far as it goes, with a warning.";

const REPORT_AFTER_LONG_HELP: &str = "\
Stack samples: the library samples allocations every R bytes on average (a Poisson process, the
R line of the profile). A sample of s bytes stands for s / (1 - exp(-s/R)) bytes allocated and
1 / (1 - exp(-s/R)) allocations, so every figure below is an estimate; a sample of 0 bytes
stands for 1 allocation of 0 bytes. Stacks are symbolised here from the files the profile names
(DWARF, else the ELF symbol tables, else FILE+0xOFFSET); the allocator's own frames at their top
are left out.

  --folded           prints folded stacks, 'outer;...;inner BYTES', by bytes, for flamegraph.pl
                     or inferno: of the bytes allocated, or with --leaks of the bytes still live;
                     only them: no summary, and no picture unless -o is given
  --leaks            prints the sampled allocations still live at the end (or at --snapshot),
                     by stack: estimated bytes and allocations, and the frames of each
  --snapshot N       counts live blocks at the Nth snapshot (P line, from 1) instead of the end:
                     for --leaks, the summary, --folded --leaks and pprof's inuse values
  --pprof OUT        writes a gzipped pprof profile: alloc_objects, alloc_space, inuse_objects,
                     inuse_space, as Go's heap profiles (go tool pprof OUT)
  --flame-peak OUT   draws a flame graph of the bytes in use at the peak (the moment the
                     estimated live sampled bytes were highest)
  --flame-alloc OUT  draws a flame graph of all the bytes allocated

The options combine; each file is written once, and none may be the profile or another output.

Exit status: 0; 1 if the profile cannot be read or is malformed, has no stack samples for an
option that needs them, has no such snapshot, or an output cannot be written; 2 for a usage
error.

Examples:
  my_alloc report app.prof --leaks
  my_alloc report app.prof --folded | flamegraph.pl > app-alloc.svg
  my_alloc report app.prof --pprof app.pb.gz --flame-peak peak.svg -o app.svg";

const COMPLETIONS_AFTER_LONG_HELP: &str = "\
The script completes the commands, their options and the shells; file names where a file is
asked for, and after run's options, PROGRAM and its own arguments.

Examples:
  my_alloc completions bash > ~/.local/share/bash-completion/completions/my_alloc
  my_alloc completions zsh > ~/.zfunc/_my_alloc     # with fpath=(~/.zfunc $fpath) in .zshrc
  my_alloc completions fish > ~/.config/fish/completions/my_alloc.fish";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "my_alloc",
    version,
    about = "run programs under the my_alloc allocator, and draw their memory profiles",
    help_template = TOP_TEMPLATE,
    after_help = TOP_AFTER_HELP,
    subcommand_required = true,
    // A usage error, as before, rather than the help on stderr.
    arg_required_else_help = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM with the library preloaded
    #[command(
        override_usage = RUN_USAGE,
        long_about = RUN_LONG_ABOUT,
        after_long_help = RUN_AFTER_LONG_HELP,
        help_template = COMMAND_TEMPLATE,
        args_override_self = true
    )]
    Run(RunArgs),
    /// Draw a recorded profile, print a summary
    #[command(
        long_about = REPORT_LONG_ABOUT,
        after_long_help = REPORT_AFTER_LONG_HELP,
        help_template = COMMAND_TEMPLATE,
        args_override_self = true
    )]
    Report(ReportArgs),
    /// Name the frames of a report of the library's (stdin to stdout)
    #[command(
        long_about = "Reads a report the library printed (a guarded block's fault or misuse) on stdin, and writes it \
                      to stdout with each frame `#i 0xPC PATH+0xOFFSET` followed by its function and file:line, \
                      read from PATH's debug information or symbol table.",
        help_template = COMMAND_TEMPLATE
    )]
    Symbolize,
    /// Print a completion script for bash, zsh or fish
    #[command(
        after_long_help = COMPLETIONS_AFTER_LONG_HELP,
        help_template = COMMAND_TEMPLATE
    )]
    Completions(CompletionsArgs),
}

/// `my_alloc run`'s options. Only long names, as before: short ones could be mistaken for the
/// program's own.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print allocation statistics at exit
    #[arg(long)]
    pub stats: bool,
    /// Print the options in effect at start
    #[arg(long)]
    pub verbose: bool,
    /// Checking mode: canaries, freed-memory fill, no thread caches
    #[arg(long)]
    pub check: bool,
    /// Record a profile, for my_alloc report
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub profile: Option<PathBuf>,
    // Negative numbers are read as values, so that "-5" is told why it is no size.
    /// Size from which a block gets its own mapping, at first (4K to 64M)
    #[arg(long, value_name = "SIZE", value_parser = mmap_threshold, allow_negative_numbers = true)]
    pub mmap_threshold: Option<usize>,
    /// Free memory at the heap's top beyond which it goes back to the OS
    #[arg(long, value_name = "SIZE", value_parser = trim_threshold, allow_negative_numbers = true)]
    pub trim_threshold: Option<usize>,
    /// How long after the heap last grew trimming waits (0 to 3600000)
    #[arg(long, value_name = "MS", value_parser = decay_ms, allow_negative_numbers = true)]
    pub decay_ms: Option<usize>,
    /// The library to preload (default below)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub lib: Option<PathBuf>,
    /// The program to run, then its own arguments, passed on unchanged
    // One list, so that everything after PROGRAM's first word is the program's, even `--stats`.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        value_hint = ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

/// `my_alloc report`'s options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The profile to draw
    #[arg(value_name = "PROFILE", value_hint = ValueHint::FilePath)]
    pub profile: PathBuf,
    /// Where the picture goes (default: PROFILE with the extension .svg)
    #[arg(short, long, value_name = "OUT.svg", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Print folded stacks of the bytes allocated (only them, for flame graph tools)
    #[arg(long)]
    pub folded: bool,
    /// Print the sampled allocations still live, by stack
    #[arg(long)]
    pub leaks: bool,
    /// Count live blocks at the Nth snapshot (P line) instead of the end
    #[arg(long, value_name = "N", value_parser = snapshot_number, allow_negative_numbers = true)]
    pub snapshot: Option<usize>,
    /// Write a gzipped pprof profile of the stack samples
    #[arg(long, value_name = "OUT.pb.gz", value_hint = ValueHint::FilePath)]
    pub pprof: Option<PathBuf>,
    /// Draw a flame graph of the bytes in use at the peak
    #[arg(long, value_name = "OUT.svg", value_hint = ValueHint::FilePath)]
    pub flame_peak: Option<PathBuf>,
    /// Draw a flame graph of all the bytes allocated
    #[arg(long, value_name = "OUT.svg", value_hint = ValueHint::FilePath)]
    pub flame_alloc: Option<PathBuf>,
}

/// `my_alloc completions`' options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a script for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells completion scripts are printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// A number as the library reads it (`src/size_text.rs`, shared), within the library's bounds, so
/// that a bad value fails here at once rather than as a warning from inside the program.
fn number_in(
    text: &str,
    what: &str,
    min: usize,
    max: usize,
    bounds: &str,
) -> Result<usize, String> {
    match parse_size(text.as_bytes()) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(format!("{n} is out of range ({bounds})")),
        None => Err(format!(
            "invalid {what} '{text}': digits with an optional K, M or G suffix"
        )),
    }
}

fn mmap_threshold(text: &str) -> Result<usize, String> {
    number_in(text, "size", 4096, 64 << 20, "4K to 64M")
}

fn trim_threshold(text: &str) -> Result<usize, String> {
    let max = usize::MAX / 2;
    number_in(text, "size", 0, max, &format!("0 to {max}"))
}

fn decay_ms(text: &str) -> Result<usize, String> {
    number_in(text, "number of milliseconds", 0, 3_600_000, "0 to 3600000")
}

/// A snapshot's number: from 1, as the report counts them.
fn snapshot_number(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("snapshots are numbered from 1".to_string()),
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "invalid snapshot number '{text}': a whole number from 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_within_bounds() {
        assert_eq!(mmap_threshold("1M"), Ok(1 << 20));
        assert_eq!(mmap_threshold("4k"), Ok(4096));
        assert_eq!(trim_threshold("0"), Ok(0));
        assert_eq!(decay_ms("3600000"), Ok(3_600_000));
        assert_eq!(
            mmap_threshold("12x"),
            Err("invalid size '12x': digits with an optional K, M or G suffix".to_string())
        );
        assert!(mmap_threshold("1K")
            .unwrap_err()
            .contains("out of range (4K to 64M)"));
        assert!(mmap_threshold("65M").unwrap_err().contains("out of range"));
        assert!(decay_ms("-5")
            .unwrap_err()
            .contains("invalid number of milliseconds '-5'"));
        assert!(decay_ms("3600001").unwrap_err().contains("out of range"));
        assert_eq!(snapshot_number("2"), Ok(2));
        assert!(snapshot_number("0").unwrap_err().contains("from 1"));
        assert!(snapshot_number("-1")
            .unwrap_err()
            .contains("invalid snapshot number '-1'"));
        assert!(snapshot_number("+1").is_err());
    }
}
