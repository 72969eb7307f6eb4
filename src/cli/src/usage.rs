//! Usage errors on one line: clap's message and tips, in the form every other failure of the
//! command has (`my_alloc: run: ...`), so that a script can read it as one line.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::args::Cli;

/// clap's error, rendered without colour and folded onto one line: the message, its tips, and
/// where to read more (`try 'my_alloc run --help'`). `command` is the subcommand the line named,
/// if any: clap names it in some errors' usage lines only.
pub fn one_line(err: &clap::Error, command: Option<&str>) -> String {
    let text = err.render().to_string();
    let (message, rest) = match text.split_once("\n\n") {
        Some((message, rest)) => (message, rest),
        None => (text.as_str(), ""),
    };
    let message = message.trim();
    let message = join_lines(message.strip_prefix("error: ").unwrap_or(message));
    let mut notes: Vec<String> = rest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        .map(str::to_string)
        .collect();
    // The failing command before the message ("run: ..."), as the command's own messages have.
    let (prefix, path) = match command {
        Some(c) => (format!("{c}: "), format!("my_alloc {c}")),
        None => (String::new(), "my_alloc".to_string()),
    };
    notes.push(format!("try '{path} --help'"));
    format!("{prefix}{message} ({})", notes.join("; "))
}

/// The subcommand `args` (without the command's own name) ask for, if they name one: the first
/// word, since the command itself takes no options but --help and --version.
pub fn subcommand_of(args: &[OsString]) -> Option<String> {
    let first = args.first()?.to_str()?;
    let known = first != "help"
        && Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == first);
    known.then(|| first.to_string())
}

/// A message's lines as one ("required arguments were not provided:\n  <PROFILE>").
fn join_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn error(args: &[&str]) -> String {
        let argv = std::iter::once("my_alloc").chain(args.iter().copied());
        let words: Vec<OsString> = args.iter().map(OsString::from).collect();
        match Cli::try_parse_from(argv) {
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                let line = one_line(&e, subcommand_of(&words).as_deref());
                assert!(!line.contains('\n'), "{line}");
                line
            }
            Ok(cli) => panic!("{args:?}: parsed as {cli:?}"),
        }
    }

    #[test]
    fn errors_name_the_command_and_the_argument() {
        let e = error(&["run", "--bogus", "--", "true"]);
        assert!(
            e.starts_with("run: unexpected argument '--bogus' found ("),
            "{e}"
        );
        assert!(e.ends_with("; try 'my_alloc run --help')"), "{e}");
        let e = error(&["run", "--stat", "true"]);
        assert!(e.contains("(a similar argument exists: '--stats'; "), "{e}");
        let e = error(&["report"]);
        assert_eq!(
            e,
            "report: the following required arguments were not provided: <PROFILE> \
             (try 'my_alloc report --help')"
        );
        let e = error(&["frobnicate"]);
        assert!(e.starts_with("unrecognized subcommand 'frobnicate'"), "{e}");
        assert!(e.ends_with("(try 'my_alloc --help')"), "{e}");
        let e = error(&[]);
        assert!(e.contains("requires a subcommand"), "{e}");
        let e = error(&["help", "frobnicate"]);
        assert!(e.starts_with("unrecognized subcommand 'frobnicate'"), "{e}");
    }

    #[test]
    fn value_errors_carry_the_parsers_message() {
        let e = error(&["run", "--mmap-threshold", "12x", "true"]);
        assert!(
            e.contains("invalid size '12x': digits with an optional K, M or G suffix"),
            "{e}"
        );
        assert!(
            e.starts_with("run: invalid value '12x' for '--mmap-threshold <SIZE>'"),
            "{e}"
        );
        assert!(e.ends_with("(try 'my_alloc run --help')"), "{e}");
        let e = error(&["run", "--stats=1", "true"]);
        assert!(e.contains("'--stats'"), "{e}");
        let e = error(&["run", "--profile", "", "true"]);
        assert!(e.contains("--profile <FILE>"), "{e}");
        let e = error(&["completions", "tcsh"]);
        assert!(e.contains("invalid value 'tcsh'"), "{e}");
    }
}
