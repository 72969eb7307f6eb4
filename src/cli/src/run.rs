//! `my_alloc run`: runs a program with the library preloaded and its options set.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;

pub const HELP: &str = "\
Usage: my_alloc run [OPTIONS] [--] PROGRAM [ARGS...]

Runs PROGRAM with the my_alloc library preloaded (LD_PRELOAD, ahead of any LD_PRELOAD already
set) and the options below passed to it as MY_ALLOC_* environment variables. my_alloc replaces
itself with PROGRAM: the exit status and signals are PROGRAM's own.

Options:                                                         (the variable each one sets)
  --stats                print allocation statistics at exit     MY_ALLOC_STATS=1
  --verbose              print the options in effect at start    MY_ALLOC_VERBOSE=1
  --check                checking mode: canaries, freed-memory   MY_ALLOC_CHECK=1
                         fill, no thread caches
  --profile FILE         record a profile, for my_alloc report   MY_ALLOC_PROFILE=FILE
  --mmap-threshold SIZE  size from which a block gets its own    MY_ALLOC_MMAP_THRESHOLD=SIZE
                         mapping, at first (4K to 64M)
  --trim-threshold SIZE  free memory at the heap's top beyond    MY_ALLOC_TRIM_THRESHOLD=SIZE
                         which it goes back to the OS
  --decay-ms MS          how long after the heap last grew       MY_ALLOC_DECAY_MS=MS
                         trimming waits (0 to 3600000)
  --lib PATH             the library to preload (default below)
  -h, --help             print this help

SIZE is a number of bytes, with an optional K, M or G suffix (powers of 1024).
Options go before PROGRAM; everything from PROGRAM on is passed to it unchanged.

The library, if --lib is not given: $MY_ALLOC_LIB, else <dir of my_alloc>/../lib/libmy_alloc.so.0
(installed), else <dir of my_alloc>/libmy_alloc.so (the build tree, target/release/).

Exit status: PROGRAM's; 2 for a usage error; 125 if the library cannot be used; 126 if PROGRAM
cannot be executed; 127 if PROGRAM is not found.

Example:
  my_alloc run --stats --profile py.prof -- python3 script.py
";

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

/// The parsed command line: a plan, or a request for help.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Plan),
}

fn usage(message: String) -> Failure {
    Failure::usage(format!("run: {message} (try 'my_alloc run --help')"))
}

/// Parses `run`'s arguments (after the word `run`).
pub fn parse_args(args: &[OsString], cwd: &Path) -> Result<Parsed, Failure> {
    let mut env: Vec<(&'static str, OsString)> = Vec::new();
    let mut lib = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            i += 1;
            break;
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            break;
        }
        // `--name=value` or `--name value`.
        let (name, inline_value) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) if bytes.starts_with(b"--") => (
                String::from_utf8_lossy(&bytes[..eq]).into_owned(),
                Some(OsStr::from_bytes(&bytes[eq + 1..]).to_os_string()),
            ),
            _ => (arg.to_string_lossy().into_owned(), None),
        };
        let flag =
            |var: &'static str, env: &mut Vec<(&'static str, OsString)>| -> Result<(), Failure> {
                if inline_value.is_some() {
                    return Err(usage(format!("option '{name}' takes no value")));
                }
                env.push((var, "1".into()));
                Ok(())
            };
        let mut value = || -> Result<OsString, Failure> {
            if let Some(v) = &inline_value {
                return Ok(v.clone());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| usage(format!("option '{name}' needs a value")))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--stats" => flag("MY_ALLOC_STATS", &mut env)?,
            "--verbose" => flag("MY_ALLOC_VERBOSE", &mut env)?,
            "--check" => flag("MY_ALLOC_CHECK", &mut env)?,
            "--profile" => {
                let file = value()?;
                if file.is_empty() {
                    return Err(usage("--profile needs a file name".to_string()));
                }
                // Absolute, so that the program changing directory does not move the profile.
                let path = cwd.join(&file);
                if path.as_os_str().len() > PROFILE_PATH_MAX {
                    return Err(usage(format!(
                        "--profile path is {} bytes long as an absolute path; the library takes at most {PROFILE_PATH_MAX}",
                        path.as_os_str().len()
                    )));
                }
                env.push(("MY_ALLOC_PROFILE", path.into_os_string()));
            }
            "--mmap-threshold" => {
                let v = size_value(&name, &value()?, 4096, 64 << 20)?;
                env.push(("MY_ALLOC_MMAP_THRESHOLD", v.to_string().into()));
            }
            "--trim-threshold" => {
                let v = size_value(&name, &value()?, 0, (usize::MAX / 2) as u64)?;
                env.push(("MY_ALLOC_TRIM_THRESHOLD", v.to_string().into()));
            }
            "--decay-ms" => {
                let v = size_value(&name, &value()?, 0, 3_600_000)?;
                env.push(("MY_ALLOC_DECAY_MS", v.to_string().into()));
            }
            "--lib" => {
                let path = value()?;
                if path.is_empty() {
                    return Err(usage("--lib needs a path".to_string()));
                }
                lib = Some(PathBuf::from(path));
            }
            _ => return Err(usage(format!("unknown option '{name}'"))),
        }
        i += 1;
    }
    let Some(program) = args.get(i) else {
        return Err(usage("no PROGRAM to run".to_string()));
    };
    Ok(Parsed::Run(Plan {
        env,
        lib,
        program: program.clone(),
        args: args[i + 1..].to_vec(),
    }))
}

/// Parses a size the way the library does (digits, then an optional K, M or G: powers of 1024)
/// and checks it against the library's bounds, so that a bad value fails here, at once.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn size_value(name: &str, value: &OsStr, min: u64, max: u64) -> Result<u64, Failure> {
    let text = value.to_string_lossy();
    match parse_size(&text) {
        Some(n) if n >= min && n <= max => Ok(n),
        Some(_) => Err(usage(format!(
            "{name} {text} is out of range ({min} to {max})"
        ))),
        None => Err(usage(format!(
            "{name} needs a number (with an optional K, M or G), not '{text}'"
        ))),
    }
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

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn plan(args: &[&str]) -> Plan {
        match parse_args(&os(args), Path::new("/home/user")) {
            Ok(Parsed::Run(p)) => p,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_args(&os(args), Path::new("/home/user")) {
            Err(f) => {
                assert_eq!(f.code, 2, "{}", f.message);
                assert!(!f.message.contains('\n'), "{}", f.message);
                f.message
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn options_become_variables() {
        let p = plan(&[
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
        let env: Vec<(&str, &str)> = p
            .env
            .iter()
            .map(|(k, v)| (*k, v.to_str().unwrap()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("MY_ALLOC_STATS", "1"),
                ("MY_ALLOC_VERBOSE", "1"),
                ("MY_ALLOC_CHECK", "1"),
                ("MY_ALLOC_PROFILE", "/home/user/out.prof"),
                ("MY_ALLOC_MMAP_THRESHOLD", "1048576"),
                ("MY_ALLOC_TRIM_THRESHOLD", "0"),
                ("MY_ALLOC_DECAY_MS", "250"),
            ]
        );
        assert_eq!(p.lib.as_deref(), Some(Path::new("/x/lib.so")));
        assert_eq!(p.program, "prog");
        assert_eq!(p.args, os(&["-a", "--stats"]));
    }

    #[test]
    fn program_without_double_dash_and_absolute_profile() {
        let p = plan(&["--profile=/tmp/p.prof", "python3", "-c", "pass"]);
        assert_eq!(
            p.env,
            vec![("MY_ALLOC_PROFILE", OsString::from("/tmp/p.prof"))]
        );
        assert_eq!(p.program, "python3");
        assert_eq!(p.args, os(&["-c", "pass"]));
    }

    #[test]
    fn help() {
        assert_eq!(
            parse_args(&os(&["--help"]), Path::new("/")).unwrap(),
            Parsed::Help
        );
        assert_eq!(
            parse_args(&os(&["--stats", "-h", "prog"]), Path::new("/")).unwrap(),
            Parsed::Help
        );
    }

    #[test]
    fn usage_errors_are_one_line() {
        assert!(usage_error(&["--bogus", "--", "true"]).contains("unknown option '--bogus'"));
        assert!(usage_error(&["--stats"]).contains("no PROGRAM"));
        assert!(usage_error(&["--stats", "--"]).contains("no PROGRAM"));
        assert!(usage_error(&["--profile"]).contains("needs a value"));
        assert!(usage_error(&["--stats=1", "true"]).contains("takes no value"));
        assert!(usage_error(&["--mmap-threshold", "12x", "true"]).contains("needs a number"));
        assert!(usage_error(&["--mmap-threshold", "1K", "true"]).contains("out of range"));
        assert!(usage_error(&["--mmap-threshold", "65M", "true"]).contains("out of range"));
        assert!(usage_error(&["--decay-ms", "-5", "true"]).contains("needs a number"));
        let long = format!("--profile={}", "x".repeat(300));
        assert!(usage_error(&[&long, "true"]).contains("at most 255"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "12x", "-5", "+5", "1 M", "99999999999999999999999"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
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
