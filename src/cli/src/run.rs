//! `my_alloc run`: runs a program with the library preloaded and its options set.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::args::RunArgs;
use crate::Failure;

/// Exit statuses of `run` itself (as env(1) and timeout(1) use them).
pub const EXIT_NO_LIBRARY: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// The library's limit on a profile path's length (`options.rs`: a 256-byte buffer with its NUL).
const PROFILE_PATH_MAX: usize = 255;

/// What the command line asks `run` to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// `MY_ALLOC_*` variables to set, in order.
    pub env: Vec<(&'static str, OsString)>,
    pub lib: Option<PathBuf>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

fn usage(message: String) -> Failure {
    Failure::usage(format!("run: {message} (try 'my_alloc run --help')"))
}

/// What the parsed options ask for: the variables in a fixed order, the program and its words.
pub fn plan(args: RunArgs, cwd: &Path) -> Result<Plan, Failure> {
    let mut env: Vec<(&'static str, OsString)> = Vec::new();
    for (on, var) in [
        (args.stats, "MY_ALLOC_STATS"),
        (args.verbose, "MY_ALLOC_VERBOSE"),
        (args.check, "MY_ALLOC_CHECK"),
    ] {
        if on {
            env.push((var, "1".into()));
        }
    }
    if let Some(file) = args.profile {
        // Absolute, so that the program changing directory does not move the profile.
        let path = cwd.join(file);
        if path.as_os_str().len() > PROFILE_PATH_MAX {
            return Err(usage(format!(
                "--profile path is {} bytes long as an absolute path; the library takes at most {PROFILE_PATH_MAX}",
                path.as_os_str().len()
            )));
        }
        env.push(("MY_ALLOC_PROFILE", path.into_os_string()));
    }
    for (value, var) in [
        (args.mmap_threshold, "MY_ALLOC_MMAP_THRESHOLD"),
        (args.trim_threshold, "MY_ALLOC_TRIM_THRESHOLD"),
        (args.decay_ms, "MY_ALLOC_DECAY_MS"),
    ] {
        if let Some(n) = value {
            env.push((var, n.to_string().into()));
        }
    }
    let mut words = args.command.into_iter();
    let Some(program) = words.next() else {
        return Err(usage("no PROGRAM to run".to_string()));
    };
    Ok(Plan {
        env,
        lib: args.lib,
        program,
        args: words.collect(),
    })
}

/// Where the library is looked for when neither --lib nor MY_ALLOC_LIB names it: installed next
/// to the command, then the build tree (cargo puts the command and the library side by side).
pub fn default_candidates(exe: &Path) -> Vec<(PathBuf, &'static str)> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    vec![
        (dir.join("../lib/libmy_alloc.so.0"), "installed"),
        (dir.join("libmy_alloc.so"), "build tree"),
    ]
}

/// Finds the library to preload. `explicit` is --lib, `from_env` is $MY_ALLOC_LIB, `exe` the
/// command's own path. A path the user named must be usable: no other library is used instead.
pub fn find_library(
    explicit: Option<&Path>,
    from_env: Option<&OsStr>,
    exe: Option<&Path>,
) -> Result<PathBuf, Failure> {
    let fail = |message: String| Failure {
        code: EXIT_NO_LIBRARY,
        message: format!("run: {message}"),
    };
    if let Some(path) = explicit {
        return check_library(path)
            .map_err(|e| fail(format!("library {} (from --lib): {e}", path.display())));
    }
    if let Some(value) = from_env.filter(|v| !v.is_empty()) {
        let path = Path::new(value);
        return check_library(path).map_err(|e| {
            fail(format!(
                "library {} (from MY_ALLOC_LIB): {e}",
                path.display()
            ))
        });
    }
    let Some(exe) = exe else {
        return Err(fail(
            "cannot find the library: the path of my_alloc itself is unknown; use --lib PATH"
                .into(),
        ));
    };
    let mut looked = String::new();
    for (path, what) in default_candidates(exe) {
        match check_library(&path) {
            Ok(found) => return Ok(found),
            Err(e) => looked.push_str(&format!("\n  {} ({what}): {e}", clean(&path).display())),
        }
    }
    Err(fail(format!(
        "cannot find the my_alloc library; looked in:{looked}\n\
         build it (make, or cargo build --release), or name it with --lib PATH or MY_ALLOC_LIB=PATH"
    )))
}

/// `a/b/../c` as `a/c`, for messages (the path is not resolved: `b` may not exist).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The library at `path`, made absolute, if it is a readable ELF file.
fn check_library(path: &Path) -> Result<PathBuf, String> {
    let mut file = std::fs::File::open(path).map_err(|e| io_text(&e))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err("is a directory".to_string());
    }
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
        return Err("not a shared library (no ELF header)".to_string());
    }
    // LD_PRELOAD is read again in every program this one starts, perhaps elsewhere: absolute.
    std::fs::canonicalize(path).map_err(|e| io_text(&e))
}

/// An I/O error without Rust's "(os error N)".
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(cut) => s[..cut].to_string(),
        None => s,
    }
}

/// LD_PRELOAD with the library first.
pub fn preload_value(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let mut v = lib.as_os_str().to_os_string();
    if let Some(existing) = existing.filter(|e| {
        !e.as_bytes()
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == b':')
    }) {
        v.push(":");
        v.push(existing);
    }
    v
}

/// Replaces this process with the program. Returns only on failure.
pub fn exec(plan: Plan) -> Failure {
    let exe = std::env::current_exe().ok();
    let from_env = std::env::var_os("MY_ALLOC_LIB");
    let lib = match find_library(plan.lib.as_deref(), from_env.as_deref(), exe.as_deref()) {
        Ok(lib) => lib,
        Err(f) => return f,
    };
    let preload = preload_value(&lib, std::env::var_os("LD_PRELOAD").as_deref());
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args).env("LD_PRELOAD", preload);
    // Not an option of the library: it would warn about an unknown MY_ALLOC_ name.
    cmd.env_remove("MY_ALLOC_LIB");
    for (name, value) in &plan.env {
        cmd.env(name, value);
    }
    let e = cmd.exec();
    let program = plan.program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound if !plan.program.as_bytes().contains(&b'/') => Failure {
            code: EXIT_NOT_FOUND,
            message: format!("run: '{program}': command not found"),
        },
        std::io::ErrorKind::NotFound => Failure {
            code: EXIT_NOT_FOUND,
            message: format!("run: cannot run '{program}': {}", io_text(&e)),
        },
        _ => Failure {
            code: EXIT_CANNOT_EXECUTE,
            message: format!("run: cannot run '{program}': {}", io_text(&e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// `run`'s arguments through clap, then into a plan.
    fn parse(args: &[&str]) -> Result<Plan, String> {
        let argv = ["my_alloc", "run"].into_iter().chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: crate::args::Command::Run(run),
            }) => plan(run, Path::new("/home/user")).map_err(|f| {
                assert_eq!(f.code, 2, "{}", f.message);
                f.message
            }),
            Ok(other) => panic!("{args:?}: {other:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                Err(crate::usage::one_line(&e, Some("run")))
            }
        }
    }

    fn plan_of(args: &[&str]) -> Plan {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn usage_error(args: &[&str]) -> String {
        match parse(args) {
            Err(message) => {
                assert!(!message.contains('\n'), "{message}");
                message
            }
            Ok(p) => panic!("{args:?}: {p:?}"),
        }
    }

    #[test]
    fn options_become_variables() {
        let p = plan_of(&[
            "--stats",
            "--verbose",
            "--check",
            "--profile",
            "out.prof",
            "--mmap-threshold=1M",
            "--trim-threshold",
            "0",
            "--decay-ms",
            "250",
            "--lib",
            "/x/lib.so",
            "--",
            "prog",
            "-a",
            "--stats",
        ]);
        let env: Vec<(&str, String)> = p
            .env
            .iter()
            .map(|(k, v)| (*k, v.to_string_lossy().into_owned()))
            .collect();
        let want = [
            ("MY_ALLOC_STATS", "1"),
            ("MY_ALLOC_VERBOSE", "1"),
            ("MY_ALLOC_CHECK", "1"),
            ("MY_ALLOC_PROFILE", "/home/user/out.prof"),
            ("MY_ALLOC_MMAP_THRESHOLD", "1048576"),
            ("MY_ALLOC_TRIM_THRESHOLD", "0"),
            ("MY_ALLOC_DECAY_MS", "250"),
        ];
        let want: Vec<(&str, String)> = want.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(env, want);
        assert_eq!(p.lib.as_deref(), Some(Path::new("/x/lib.so")));
        assert_eq!(p.program, "prog");
        assert_eq!(p.args, os(&["-a", "--stats"]));
    }

    #[test]
    fn program_without_double_dash_and_absolute_profile() {
        let p = plan_of(&["--profile=/tmp/p.prof", "python3", "-c", "pass"]);
        assert_eq!(
            p.env,
            vec![("MY_ALLOC_PROFILE", OsString::from("/tmp/p.prof"))]
        );
        assert_eq!(p.program, "python3");
        assert_eq!(p.args, os(&["-c", "pass"]));
    }

    #[test]
    fn everything_from_program_on_is_the_programs() {
        // Even the command's own options, and a second `--`.
        let p = plan_of(&["prog", "--stats", "--", "-h", "--lib", "x"]);
        assert!(p.env.is_empty(), "{:?}", p.env);
        assert_eq!(p.lib, None);
        assert_eq!(p.args, os(&["--stats", "--", "-h", "--lib", "x"]));
        let p = plan_of(&["--", "--looks-like-an-option", "-x"]);
        assert_eq!(p.program, "--looks-like-an-option");
        assert_eq!(p.args, os(&["-x"]));
        // An option given twice: the last one counts, as before.
        let p = plan_of(&[
            "--decay-ms",
            "1",
            "--decay-ms",
            "2",
            "--stats",
            "--stats",
            "true",
        ]);
        assert_eq!(
            p.env,
            vec![
                ("MY_ALLOC_STATS", OsString::from("1")),
                ("MY_ALLOC_DECAY_MS", OsString::from("2"))
            ]
        );
    }

    #[test]
    fn help_is_asked_for_before_program() {
        for args in [&["--help"][..], &["--stats", "-h", "prog"]] {
            let argv = ["my_alloc", "run"].into_iter().chain(args.iter().copied());
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn usage_errors_are_one_line() {
        assert!(usage_error(&["--bogus", "--", "true"]).contains("unexpected argument '--bogus'"));
        assert!(usage_error(&["--stats"]).contains("<PROGRAM>"));
        assert!(usage_error(&["--stats", "--"]).contains("<PROGRAM>"));
        assert!(usage_error(&["--profile"]).contains("a value is required for '--profile <FILE>'"));
        assert!(usage_error(&["--stats=1", "true"]).contains("unexpected value '1' for '--stats'"));
        assert!(usage_error(&["--mmap-threshold", "12x", "true"]).contains("invalid size '12x'"));
        assert!(usage_error(&["--mmap-threshold", "1K", "true"]).contains("out of range"));
        assert!(usage_error(&["--mmap-threshold", "65M", "true"]).contains("out of range"));
        assert!(usage_error(&["--decay-ms", "-5", "true"]).contains("'-5'"));
        let long = format!("--profile={}", "x".repeat(300));
        assert!(usage_error(&[&long, "true"]).contains("at most 255"));
    }

    #[test]
    fn preload_goes_first() {
        let lib = Path::new("/l/libmy_alloc.so");
        assert_eq!(preload_value(lib, None), "/l/libmy_alloc.so");
        assert_eq!(
            preload_value(lib, Some(OsStr::new(""))),
            "/l/libmy_alloc.so"
        );
        assert_eq!(
            preload_value(lib, Some(OsStr::new("/a.so /b.so"))),
            "/l/libmy_alloc.so:/a.so /b.so"
        );
    }

    #[test]
    fn library_search() {
        let dir = std::env::temp_dir().join(format!("my_alloc-cli-test-{}", std::process::id()));
        let bin = dir.join("bin");
        let lib = dir.join("lib");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        let exe = bin.join("my_alloc");

        // Nothing there: the message lists both places.
        let f = find_library(None, None, Some(&exe)).unwrap_err();
        assert_eq!(f.code, EXIT_NO_LIBRARY);
        assert!(
            f.message.contains(&format!(
                "{}/lib/libmy_alloc.so.0 (installed)",
                dir.display()
            )),
            "{}",
            f.message
        );
        assert!(
            f.message.contains(&format!(
                "{}/bin/libmy_alloc.so (build tree)",
                dir.display()
            )),
            "{}",
            f.message
        );

        // Build tree, then installed, which wins.
        std::fs::write(bin.join("libmy_alloc.so"), b"\x7fELF rest").unwrap();
        assert_eq!(
            find_library(None, None, Some(&exe)).unwrap(),
            bin.join("libmy_alloc.so")
        );
        std::fs::write(lib.join("libmy_alloc.so.0"), b"\x7fELF rest").unwrap();
        assert_eq!(
            find_library(None, None, Some(&exe)).unwrap(),
            lib.join("libmy_alloc.so.0")
        );

        // MY_ALLOC_LIB and --lib come first, and must be usable.
        let other = dir.join("other.so");
        std::fs::write(&other, b"\x7fELF rest").unwrap();
        assert_eq!(
            find_library(None, Some(other.as_os_str()), Some(&exe)).unwrap(),
            other
        );
        let f = find_library(None, Some(OsStr::new("/nonexistent.so")), Some(&exe)).unwrap_err();
        assert!(
            f.message
                .contains("/nonexistent.so (from MY_ALLOC_LIB): No such file"),
            "{}",
            f.message
        );
        let f = find_library(
            Some(Path::new("/nonexistent.so")),
            Some(other.as_os_str()),
            Some(&exe),
        )
        .unwrap_err();
        assert!(
            f.message
                .contains("/nonexistent.so (from --lib): No such file"),
            "{}",
            f.message
        );
        let text = dir.join("text.so");
        std::fs::write(&text, b"hello").unwrap();
        let f = find_library(Some(&text), None, None).unwrap_err();
        assert!(f.message.contains("not a shared library"), "{}", f.message);
        let f = find_library(Some(&dir), None, None).unwrap_err();
        assert!(f.message.contains("is a directory"), "{}", f.message);

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
