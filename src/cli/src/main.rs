//! The `my_alloc` command: runs programs under the my_alloc allocator (`run`), draws the profiles
//! the library records (`report`), and prints shell completions for itself (`completions`).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

mod args;
mod completions;
mod flame;
mod leaks;
mod pprof;
mod profile;
mod report;
mod report_command;
mod run;
// The library's own size parser, so that the command accepts exactly the spellings it does.
#[path = "../../size_text.rs"]
mod size_text;
mod stacks;
mod symbolize;
mod strip;
mod symbols;
mod usage;

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

    /// A failure at run time: exit status 1.
    pub fn error(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = match Cli::try_parse_from(&args) {
        Ok(cli) => dispatch(cli.command),
        // --help and --version: clap prints them on stdout, and they are no failure.
        Err(e) if !e.use_stderr() => match e.print() {
            Ok(()) => Ok(()),
            Err(io) => Err(Failure::error(format!(
                "cannot print the help: {}",
                run::io_text(&io)
            ))),
        },
        Err(e) => Err(Failure {
            code: e.exit_code(),
            message: usage::one_line(&e, usage::subcommand_of(&args[1..]).as_deref()),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("my_alloc: {}", f.message);
            ExitCode::from(u8::try_from(f.code).unwrap_or(1))
        }
    }
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(args) => {
            let cwd = std::env::current_dir().map_err(|e| {
                Failure::error(format!(
                    "run: cannot read the current directory: {}",
                    run::io_text(&e)
                ))
            })?;
            // exec returns only when it fails.
            Err(run::exec(run::plan(args, &cwd)?))
        }
        Command::Report(args) => report_command::report(args),
        Command::Completions(args) => completions::print(args.shell),
        Command::Symbolize => symbolize::symbolize(std::io::stdin().lock(), std::io::stdout().lock())
            .map_err(|e| Failure::error(format!("symbolize: {}", run::io_text(&e)))),
    }
}
