//! The built `my_alloc` command, run as a user would.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/example.prof");

// Kept in step with src/report.rs (the binary crate's items are not visible to tests).
const CAPTIONS: [&str; 3] = [
    "(a) Requests by size class",
    "(b) Memory over time",
    "(c) Fragmentation over time: resident but not in use",
];
const COLOR_IN_USE: &str = "#1F77B4";
const COLOR_RESIDENT: &str = "#D62728";
const COLOR_GAP: &str = "#9467BD";
const COLOR_BARS: &str = "#2CA02C";
const COLOR_MAPPED_BAR: &str = "#FF7F0E";

fn my_alloc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_my_alloc"))
        .args(args)
        .env_remove("MY_ALLOC_LIB")
        .output()
        .expect("run my_alloc")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("my_alloc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The SVG's text elements, trimmed.
fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

/// Point counts of the polylines drawn in `color` with `width` (the series themselves; their
/// legend samples are drawn thicker, with two points).
fn lines(doc: &roxmltree::Document, color: &str, width: &str) -> Vec<usize> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| {
            n.attribute("stroke") == Some(color) && n.attribute("stroke-width") == Some(width)
        })
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect()
}

fn sample_lines(profile: &str) -> usize {
    profile.lines().filter(|l| l.starts_with("S ")).count()
}

#[test]
fn report_draws_the_example() {
    let dir = scratch("report");
    let out = dir.join("example.svg");
    let o = my_alloc(&["report", EXAMPLE, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "no warnings expected: {}",
        text(&o.stderr)
    );

    let stdout = text(&o.stdout);
    for want in [
        "program:       /usr/bin/python3 wordfreq.py",
        "duration:      3.012 s (61 samples)",
        "peak in use:   48.0 MiB",
        "peak resident: 52.0 MiB",
        "requests:      3271518 in 23 size classes",
        "busiest classes:",
        &format!("picture:       {}", out.display()),
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let busiest: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("block size"))
        .skip(1)
        .take(6)
        .collect();
    assert!(
        busiest[0].contains("48 B") && busiest[0].contains("958000"),
        "{stdout}"
    );
    assert!(busiest[4].contains("96 B"), "{stdout}");
    assert!(
        busiest[5].starts_with("picture:"),
        "five classes, then the picture: {stdout}"
    );

    let svg = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the picture is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let t = texts(&doc);
    assert!(
        t.contains(&"my_alloc profile of /usr/bin/python3 wordfreq.py".to_string()),
        "{t:?}"
    );
    for caption in CAPTIONS {
        assert!(
            t.contains(&caption.to_string()),
            "no panel {caption:?} in {t:?}"
        );
    }
    for label in [
        "in use",
        "resident",
        "resident - in use",
        "requests",
        "time (s)",
        "MiB",
    ] {
        assert!(
            t.contains(&label.to_string()),
            "no label {label:?} in {t:?}"
        );
    }
    // The size axis: log-spaced, from 16 bytes, with a bar for mapped blocks.
    for label in ["16", "32", "64", "1K", "32K", "128K", "256K", "mapped"] {
        assert!(
            t.contains(&label.to_string()),
            "no size label {label:?} in {t:?}"
        );
    }

    let samples = sample_lines(&std::fs::read_to_string(EXAMPLE).unwrap());
    assert_eq!(samples, 61);
    assert_eq!(
        lines(&doc, COLOR_IN_USE, "2"),
        vec![samples],
        "the in-use line"
    );
    assert_eq!(
        lines(&doc, COLOR_RESIDENT, "2"),
        vec![samples],
        "the resident line"
    );
    assert_eq!(
        lines(&doc, COLOR_GAP, "2"),
        vec![samples],
        "the fragmentation line"
    );
    // Legends: one sample each.
    for color in [COLOR_IN_USE, COLOR_RESIDENT, COLOR_GAP] {
        assert_eq!(lines(&doc, color, "3"), vec![2], "legend of {color}");
    }
    // One bar per non-empty power of two: 13 in the example (32 to 256K but 32K; 16 is empty),
    // and one for the mapped blocks, in another colour.
    let bars = |color: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(color))
            .count()
    };
    assert_eq!(bars(COLOR_BARS), 13);
    assert_eq!(bars(COLOR_MAPPED_BAR), 1);

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_default_output_is_next_to_the_profile() {
    let dir = scratch("default-out");
    let prof = dir.join("run.prof");
    std::fs::copy(EXAMPLE, &prof).unwrap();
    let o = my_alloc(&["report", prof.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert!(dir.join("run.svg").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_draws_a_truncated_profile_with_a_warning() {
    let dir = scratch("truncated");
    let prof = dir.join("crashed.prof");
    // The example up to its 40th sample, the next line cut in the middle: no class counts, no E.
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut cut = String::new();
    let mut samples = 0;
    for line in example.lines() {
        if line.starts_with("S ") {
            if samples == 40 {
                cut.push_str(&line[..7]);
                break;
            }
            samples += 1;
        }
        cut.push_str(line);
        cut.push('\n');
    }
    std::fs::write(&prof, &cut).unwrap();
    let o = my_alloc(&["report", prof.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert!(
        text(&o.stdout).contains("truncated: no end marker"),
        "{}",
        text(&o.stdout)
    );

    let svg = std::fs::read_to_string(dir.join("crashed.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(lines(&doc, COLOR_IN_USE, "2"), vec![40]);
    assert_eq!(lines(&doc, COLOR_RESIDENT, "2"), vec![40]);
    let t = texts(&doc);
    assert!(t.iter().any(|s| s.ends_with("(truncated)")), "{t:?}");
    assert!(
        t.iter().any(|s| s.starts_with("no size-class counts")),
        "{t:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_rejects_a_malformed_profile() {
    let dir = scratch("malformed");
    let prof = dir.join("bad.prof");
    std::fs::write(&prof, "my_alloc-profile 1\nS 0 1 2 3\nS 10 1 two 3\nE 20\n").unwrap();
    let o = my_alloc(&["report", prof.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.prof: line 3:") && stderr.contains("'two'"),
        "{stderr}"
    );
    assert!(!dir.join("bad.svg").exists());

    let o = my_alloc(&["report", dir.join("missing.prof").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("cannot read"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &[][..],
        &["--bogus"],
        &["frobnicate"],
        &["report"],
        &["report", "--bogus", EXAMPLE],
        &["report", EXAMPLE, "other.prof"],
        &["report", "x.svg"],
        &["run"],
        &["run", "--bogus", "--", "true"],
        &["run", "--mmap-threshold", "lots", "--", "true"],
        &["help", "frobnicate"],
        &["run", "--stats=1", "true"],
        &["report", EXAMPLE, "-o", ""],
        &["completions"],
        &["completions", "tcsh"],
    ] {
        let o = my_alloc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        let stderr = text(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("my_alloc: "), "{args:?}: {stderr}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version() {
    for (args, first) in [
        (&["--help"][..], "my_alloc - "),
        (&["-h"], "my_alloc - "),
        (&["help"], "my_alloc - "),
        (&["run", "--help"], "Usage: my_alloc run"),
        (&["help", "run"], "Usage: my_alloc run"),
        (&["report", "--help"], "Usage: my_alloc report"),
        (&["help", "report"], "Usage: my_alloc report"),
    ] {
        let o = my_alloc(args);
        assert!(o.status.success(), "{args:?}");
        assert!(
            text(&o.stdout).starts_with(first),
            "{args:?}: {}",
            text(&o.stdout)
        );
        assert!(
            text(&o.stdout)
                .lines()
                .all(|l| l.len() <= 100 && l.is_ascii()),
            "{args:?}"
        );
    }
    // The command's version is the library's.
    let root =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap();
    let lib_version = root
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the library's version");
    let o = my_alloc(&["--version"]);
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), format!("my_alloc {lib_version}\n"));
}

#[test]
fn help_names_every_option() {
    let o = my_alloc(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let top = text(&o.stdout);
    for word in ["run", "report", "completions", "--version", "Example:"] {
        assert!(top.contains(word), "no {word:?} in:\n{top}");
    }

    for args in [&["run", "--help"][..], &["run", "-h"]] {
        let o = my_alloc(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let help = text(&o.stdout);
        assert!(
            help.starts_with("Usage: my_alloc run [OPTIONS] [--] PROGRAM [ARGS...]\n"),
            "{help}"
        );
        for option in [
            "--stats",
            "--verbose",
            "--check",
            "--profile <FILE>",
            "--mmap-threshold <SIZE>",
            "--trim-threshold <SIZE>",
            "--decay-ms <MS>",
            "--lib <PATH>",
            "-h, --help",
            "<PROGRAM>",
        ] {
            assert!(help.contains(option), "{args:?}: no {option:?} in:\n{help}");
        }
    }
    // The long help tells the variables, the exit statuses and where the library is looked for.
    let help = text(&my_alloc(&["run", "--help"]).stdout);
    for words in [
        "MY_ALLOC_MMAP_THRESHOLD=SIZE",
        "127 if PROGRAM is not found",
        "$MY_ALLOC_LIB",
    ] {
        assert!(help.contains(words), "no {words:?} in:\n{help}");
    }

    let help = text(&my_alloc(&["report", "--help"]).stdout);
    assert!(help.contains("-o, --output <OUT.svg>"), "{help}");
    assert!(help.contains("<PROFILE>"), "{help}");
}

#[test]
fn unknown_options_are_named_with_a_suggestion() {
    let o = my_alloc(&["run", "--bogus", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = text(&o.stderr);
    assert!(
        stderr.starts_with("my_alloc: run: unexpected argument '--bogus' found"),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("try 'my_alloc run --help')"),
        "{stderr}"
    );

    let o = my_alloc(&["run", "--stat", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("a similar argument exists: '--stats'"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_bad_size_is_a_usage_error() {
    for (args, want) in [
        (
            &["run", "--mmap-threshold", "12x", "--", "true"][..],
            "invalid value '12x' for '--mmap-threshold <SIZE>': \
             invalid size '12x': digits with an optional K, M or G suffix",
        ),
        (
            &["run", "--mmap-threshold=65M", "true"],
            "68157440 is out of range (4K to 64M)",
        ),
        (
            &["run", "--trim-threshold", "1 M", "true"],
            "invalid size '1 M'",
        ),
        (
            &["run", "--decay-ms", "-5", "true"],
            "invalid number of milliseconds '-5'",
        ),
    ] {
        let o = my_alloc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let stderr = text(&o.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, want) in [
        ("bash", "complete -F _my_alloc"),
        ("zsh", "#compdef my_alloc"),
        ("fish", "complete -c my_alloc"),
    ] {
        let o = my_alloc(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o.stderr));
        let script = text(&o.stdout);
        assert!(script.contains("my_alloc"), "{shell}");
        assert!(script.contains(want), "{shell}: no {want:?}");
        for option in ["mmap-threshold", "decay-ms", "output"] {
            assert!(script.contains(option), "{shell}: no {option:?}");
        }
    }
}

#[test]
fn run_fails_clearly_without_the_library() {
    let o = my_alloc(&["run", "--lib", "/nonexistent/libmy_alloc.so", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("/nonexistent/libmy_alloc.so (from --lib): No such file or directory"),
        "{stderr}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_my_alloc"))
        .args(["run", "--", "true"])
        .env("MY_ALLOC_LIB", "/nonexistent/lib.so")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("/nonexistent/lib.so (from MY_ALLOC_LIB)"),
        "{}",
        text(&o.stderr)
    );
}

/// The library, if it has been built (cargo build --release at the repository's root).
fn built_library() -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/libmy_alloc.so");
    if lib.is_file() {
        Some(lib)
    } else {
        eprintln!(
            "skipped: {} is not built (cargo build --release)",
            lib.display()
        );
        None
    }
}

#[test]
fn run_preloads_the_library() {
    let Some(lib) = built_library() else { return };
    let lib = lib.to_str().unwrap();

    let o = my_alloc(&["run", "--lib", lib, "--stats", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("cannot be preloaded"),
        "{}",
        text(&o.stderr)
    );

    // What the program sees: the library first in LD_PRELOAD, the options as variables, and no
    // MY_ALLOC_LIB (the library would warn about an unknown option).
    let o = Command::new(env!("CARGO_BIN_EXE_my_alloc"))
        .args([
            "run",
            "--decay-ms",
            "250",
            "--mmap-threshold=1M",
            "--",
            "/usr/bin/env",
        ])
        .env("MY_ALLOC_LIB", lib)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let env = text(&o.stdout);
    let canonical = std::fs::canonicalize(lib).unwrap();
    assert!(
        env.lines()
            .any(|l| l == format!("LD_PRELOAD={}", canonical.display())),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "MY_ALLOC_DECAY_MS=250"), "{env}");
    assert!(
        env.lines().any(|l| l == "MY_ALLOC_MMAP_THRESHOLD=1048576"),
        "{env}"
    );
    assert!(!env.contains("MY_ALLOC_LIB="), "{env}");
    assert!(
        !text(&o.stderr).contains("unknown option"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn run_passes_exit_status_and_signals_through() {
    let Some(lib) = built_library() else { return };
    let lib = lib.to_str().unwrap();

    let o = my_alloc(&["run", "--lib", lib, "--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));

    let o = my_alloc(&["run", "--lib", lib, "--", "/bin/sh", "-c", "kill -TERM $$"]);
    assert_eq!(o.status.signal(), Some(15), "{:?}", o.status);

    let o = my_alloc(&["run", "--lib", lib, "--", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        text(&o.stderr).contains("cannot run '/nonexistent/program'"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn run_gives_the_program_its_own_options() {
    let Some(lib) = built_library() else { return };
    let lib = lib.to_str().unwrap();

    // After `--`, and without it: everything from PROGRAM on, even the command's own options.
    for args in [
        &["run", "--lib", lib, "--", "sh", "-c", "echo \"$@\"", "sh"][..],
        &["run", "--lib", lib, "sh", "-c", "echo \"$@\"", "sh"],
    ] {
        let mut args = args.to_vec();
        args.extend([
            "--its-own-flag",
            "--stats",
            "--",
            "-h",
            "--mmap-threshold=12x",
        ]);
        let o = my_alloc(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stdout),
            "--its-own-flag --stats -- -h --mmap-threshold=12x\n",
            "{args:?}"
        );
        // --stats went to the program, not to the library: no statistics at exit.
        assert!(
            !text(&o.stderr).contains("allocations"),
            "{}",
            text(&o.stderr)
        );
    }

    let o = my_alloc(&["run", "--lib", lib, "/bin/echo", "--its-own-flag"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "--its-own-flag\n");
}
