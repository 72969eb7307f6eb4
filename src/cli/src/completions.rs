//! `my_alloc completions SHELL`: a completion script generated from the same definitions that
//! parse the command line, so it always offers the options the command has.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell as Generator;

use crate::args::{Cli, Shell};
use crate::Failure;

/// The script for `shell`, as text.
pub fn script(shell: Shell) -> Vec<u8> {
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    // Into memory first: the generator panics on a write error, and a closed pipe is not a bug.
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "my_alloc", &mut out);
    out
}

/// Prints the script for `shell` on stdout.
pub fn print(shell: Shell) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script(shell))
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            Failure::error(format!(
                "completions: cannot write the script: {}",
                crate::run::io_text(&e)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_know_the_commands_and_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).expect("a script is text");
            for word in [
                "my_alloc",
                "run",
                "report",
                "completions",
                "mmap-threshold",
                "output",
            ] {
                assert!(text.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }
}
