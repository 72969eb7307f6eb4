//! The `my_alloc` command: runs programs under the my_alloc allocator (`run`) and draws the
//! profiles the library records (`report`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod profile;
mod report;
mod run;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
my_alloc - run programs under the my_alloc allocator, and draw their memory profiles

Usage:
  my_alloc run [OPTIONS] [--] PROGRAM [ARGS...]   run PROGRAM with the library preloaded
  my_alloc report PROFILE [-o OUT.svg]            draw a recorded profile, print a summary
  my_alloc help [COMMAND]                         print this help, or a command's
  my_alloc --version                              print the version

Example:
  my_alloc run --stats --profile py.prof -- python3 script.py
  my_alloc report py.prof          # writes py.svg

'my_alloc COMMAND --help' tells more about a command.
";

const REPORT_HELP: &str = "\
Usage: my_alloc report PROFILE [-o OUT.svg]

Reads a profile recorded by the library (my_alloc run --profile PROFILE, or MY_ALLOC_PROFILE),
draws it as one SVG picture, and prints a summary: duration, peak bytes in use and resident, the
number of requests and the five busiest size classes.

The picture has three panels: (a) requests by size class (one bar per power of two, and one for
blocks with their own mapping), (b) bytes in use and resident over time, (c) fragmentation over
time: bytes resident but not in use.

A profile cut short (the program crashed) is drawn as far as it goes, with a warning.

Options:
  -o, --output OUT.svg   where the picture goes (default: PROFILE with the extension .svg)
  -h, --help             print this help

Exit status: 0; 1 if the profile cannot be read or is malformed, or the picture cannot be
written; 2 for a usage error.
";

/// Why the command stops: an exit status and a message for stderr (after "my_alloc: ").
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// A usage error: exit status 2.
    pub fn usage(message: String) -> Failure {
        Failure { code: 2, message }
    }

    fn error(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("my_alloc: {}", f.message);
            ExitCode::from(u8::try_from(f.code).unwrap_or(1))
        }
    }
}

fn dispatch(args: &[OsString]) -> Result<(), Failure> {
    let Some(first) = args.first() else {
        return Err(Failure::usage(
            "no command given (try 'my_alloc --help')".to_string(),
        ));
    };
    let rest = &args[1..];
    match first.to_string_lossy().as_ref() {
        "-h" | "--help" => print!("{HELP}"),
        "-V" | "--version" => println!("my_alloc {VERSION}"),
        "help" => match rest.first().map(|a| a.to_string_lossy()) {
            None => print!("{HELP}"),
            Some(c) if c == "run" => print!("{}", run::HELP),
            Some(c) if c == "report" => print!("{REPORT_HELP}"),
            Some(c) => {
                return Err(Failure::usage(format!(
                    "help: unknown command '{c}' (try 'my_alloc --help')"
                )))
            }
        },
        "run" => {
            let cwd = std::env::current_dir().map_err(|e| {
                Failure::error(format!(
                    "run: cannot read the current directory: {}",
                    run::io_text(&e)
                ))
            })?;
            match run::parse_args(rest, &cwd)? {
                run::Parsed::Help => print!("{}", run::HELP),
                run::Parsed::Run(plan) => return Err(run::exec(plan)),
            }
        }
        "report" => report_command(rest)?,
        other if other.starts_with('-') => {
            return Err(Failure::usage(format!(
                "unknown option '{other}' (try 'my_alloc --help')"
            )))
        }
        other => {
            return Err(Failure::usage(format!(
                "unknown command '{other}' (try 'my_alloc --help')"
            )))
        }
    }
    Ok(())
}

fn report_usage(message: String) -> Failure {
    Failure::usage(format!("report: {message} (try 'my_alloc report --help')"))
}

fn report_command(args: &[OsString]) -> Result<(), Failure> {
    let mut input: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if !options_done && arg.starts_with('-') && arg != "-" {
            match arg.as_ref() {
                "--" => options_done = true,
                "-h" | "--help" => {
                    print!("{REPORT_HELP}");
                    return Ok(());
                }
                "-o" | "--output" => {
                    i += 1;
                    let v = args
                        .get(i)
                        .ok_or_else(|| report_usage(format!("option '{arg}' needs a file name")))?;
                    output = Some(PathBuf::from(v));
                }
                a if a.starts_with("--output=") => {
                    output = Some(PathBuf::from(&a["--output=".len()..]))
                }
                a if a.starts_with("-o") => output = Some(PathBuf::from(&a[2..])),
                a => return Err(report_usage(format!("unknown option '{a}'"))),
            }
        } else if input.is_none() {
            input = Some(PathBuf::from(&args[i]));
        } else {
            return Err(report_usage(format!(
                "one PROFILE at a time, not also '{arg}'"
            )));
        }
        i += 1;
    }
    let Some(input) = input else {
        return Err(report_usage("no PROFILE given".to_string()));
    };
    if output.as_ref().is_some_and(|o| o.as_os_str().is_empty()) {
        return Err(report_usage("empty output file name".to_string()));
    }
    let output = output.unwrap_or_else(|| input.with_extension("svg"));
    if output == input {
        return Err(report_usage(format!(
            "the picture would overwrite the profile {}: name it with -o",
            input.display()
        )));
    }
    report(&input, &output)
}

fn report(input: &Path, output: &Path) -> Result<(), Failure> {
    let shown = input.display().to_string();
    let bytes = std::fs::read(input).map_err(|e| {
        Failure::error(format!("report: cannot read {shown}: {}", run::io_text(&e)))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed =
        profile::parse(&text).map_err(|e| Failure::error(format!("report: {shown}: {e}")))?;
    for w in &parsed.warnings {
        eprintln!("my_alloc: report: warning: {shown}: {w}");
    }
    let name = input
        .file_name()
        .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
    let svg =
        report::draw(&parsed.profile, &name).map_err(|e| Failure::error(format!("report: {e}")))?;
    std::fs::write(output, svg).map_err(|e| {
        Failure::error(format!(
            "report: cannot write {}: {}",
            output.display(),
            run::io_text(&e)
        ))
    })?;
    print!("{}", report::summary(&parsed.profile, &shown));
    println!("picture:       {}", output.display());
    Ok(())
}
