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
        &["report", EXAMPLE, "--snapshot", "0"],
        &["report", EXAMPLE, "--snapshot", "two"],
        &["report", EXAMPLE, "--pprof", EXAMPLE],
        &[
            "report",
            EXAMPLE,
            "--flame-peak",
            "a.svg",
            "--flame-alloc",
            "a.svg",
        ],
        &["report", EXAMPLE, "-o", "a.svg", "--flame-alloc", "a.svg"],
        &["report", EXAMPLE, "--pprof"],
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
    for option in [
        "--folded",
        "--leaks",
        "--snapshot <N>",
        "--pprof <OUT.pb.gz>",
        "--flame-peak <OUT.svg>",
        "--flame-alloc <OUT.svg>",
        "s / (1 - exp(-s/R))",
        "inuse_space",
    ] {
        assert!(help.contains(option), "no {option:?} in:\n{help}");
    }
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
        for option in [
            "mmap-threshold",
            "decay-ms",
            "output",
            "flame-peak",
            "pprof",
            "snapshot",
        ] {
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

const STACKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stacks.prof");

#[test]
fn report_summarises_stack_samples_and_lists_leaks() {
    let dir = scratch("leaks");
    let out = dir.join("stacks.svg");
    let o = my_alloc(&["report", STACKS, "--leaks", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    // The files named in the profile do not exist: one warning says so.
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .contains("cannot read symbols from 4 files; their frames are shown as FILE+0xOFFSET"),
        "{stderr}"
    );
    let stdout = text(&o.stdout);
    for want in [
        "stack samples: 7 (R = 64.0 KiB): 1.8 MiB allocated in 1062 allocations (estimated)\n",
        "live at end:   1.2 MiB in 19 allocations (estimated), 3 samples in 2 stacks\n",
        "top leaks:\n       1.1 MiB  demo+0x1100 <- demo+0x1200\n      66.0 KiB  libparse.so+0x1500 <- demo+0x1200\npicture:",
        "\nleaks: sampled allocations live at the end of the profile\n",
        "\n#1  1.1 MiB in 2 allocations (2 samples)\n    demo+0x1100\n    demo+0x1200\n    demo+0x1300\n",
        "\n#2  66.0 KiB in 17 allocations (1 sample)\n    libparse.so+0x1500\n",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    // The allocator's and the unwinder's frames are gone.
    assert!(
        !stdout.contains("libmy_alloc") && !stdout.contains("libgcc_s"),
        "{stdout}"
    );
    assert!(out.is_file());

    // At a snapshot: blocks freed after it are still live there.
    let o = my_alloc(&[
        "report",
        STACKS,
        "--leaks",
        "--snapshot",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("at snapshot 1: 1.6 MiB"), "{stdout}");
    assert!(stdout.contains("live at snapshot 1 (0.080 s)"), "{stdout}");
    assert!(stdout.contains("from 5 samples in 3 stacks"), "{stdout}");

    let o = my_alloc(&[
        "report",
        STACKS,
        "--snapshot",
        "3",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no snapshot 3: the profile has 2 (P lines)"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folded_stacks_are_all_that_is_printed() {
    let dir = scratch("folded");
    let prof = dir.join("s.prof");
    std::fs::copy(STACKS, &prof).unwrap();
    let o = my_alloc(&["report", prof.to_str().unwrap(), "--folded"]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "demo+0x1300;demo+0x1200;demo+0x1100 1241928\n\
         demo+0x1300;demo+0x1400 534070\n\
         demo+0x1300;demo+0x1200;libparse.so+0x1500 135211\n"
    );
    // No picture unless asked for by name.
    assert!(!dir.join("s.svg").exists());
    let picture = dir.join("named.svg");
    let o = my_alloc(&[
        "report",
        prof.to_str().unwrap(),
        "--folded",
        "-o",
        picture.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 3, "{}", text(&o.stdout));
    assert!(picture.is_file());

    // With --leaks: the live bytes.
    let o = my_alloc(&["report", prof.to_str().unwrap(), "--folded", "--leaks"]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "demo+0x1300;demo+0x1200;demo+0x1100 1176360\n\
         demo+0x1300;demo+0x1200;libparse.so+0x1500 67605\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn options_for_stack_samples_need_them() {
    for option in [
        &["--folded"][..],
        &["--leaks"],
        &["--pprof", "x.pb.gz"],
        &["--snapshot", "1"],
    ] {
        let mut args = vec!["report", EXAMPLE];
        args.extend(option);
        let o = my_alloc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let stderr = text(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("no allocation stack samples (no R line) for"),
            "{stderr}"
        );
        assert!(o.stdout.is_empty());
    }
}

/// A minimal protobuf wire-format reader, independent of the command's encoder.
mod wire {
    #[derive(Debug, Clone, Copy)]
    pub enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
    }

    pub fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (first, rest) = b.split_first().expect("a varint cut short");
            *b = rest;
            v |= u64::from(first & 0x7f) << shift;
            if first & 0x80 == 0 {
                return v;
            }
        }
        panic!("a varint of more than 10 bytes");
    }

    /// A message's fields, in order.
    pub fn fields(mut b: &[u8]) -> Vec<(u64, Value<'_>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut b)),
                2 => {
                    let n = varint(&mut b) as usize;
                    let (data, rest) = b.split_at(n);
                    b = rest;
                    Value::Bytes(data)
                }
                1 => {
                    b = &b[8..];
                    continue;
                }
                5 => {
                    b = &b[4..];
                    continue;
                }
                w => panic!("wire type {w}"),
            };
            out.push((key >> 3, value));
        }
        out
    }

    /// A repeated number field's values, packed or not.
    pub fn numbers(fields: &[(u64, Value<'_>)], field: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for (f, v) in fields {
            if *f != field {
                continue;
            }
            match *v {
                Value::Varint(n) => out.push(n),
                Value::Bytes(mut b) => {
                    while !b.is_empty() {
                        out.push(varint(&mut b));
                    }
                }
            }
        }
        out
    }

    pub fn number(fields: &[(u64, Value<'_>)], field: u64) -> u64 {
        numbers(fields, field).last().copied().unwrap_or(0)
    }

    pub fn messages<'a>(fields: &[(u64, Value<'a>)], field: u64) -> Vec<Vec<(u64, Value<'a>)>> {
        fields
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| match *v {
                Value::Bytes(b) => self::fields(b),
                Value::Varint(_) => panic!("field {field} is not a message"),
            })
            .collect()
    }
}

/// The estimates the samples of a profile stand for, computed from its text: all, and live at
/// the end, each (count, bytes).
fn expected_estimates(profile: &str) -> [(f64, f64); 2] {
    let mut rate = 0.0;
    let mut blocks: Vec<(String, f64, bool)> = Vec::new();
    for line in profile.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"R") => rate = f[1].parse().unwrap(),
            Some(&"A") => blocks.push((f[4].to_string(), f[2].parse().unwrap(), true)),
            Some(&"F") => {
                if let Some(b) = blocks.iter_mut().rev().find(|b| b.0 == f[2] && b.2) {
                    b.2 = false;
                }
            }
            _ => {}
        }
    }
    let mut out = [(0.0, 0.0); 2];
    for (_, s, live) in blocks {
        let p = 1.0 - (-s / rate).exp();
        out[0].0 += 1.0 / p;
        out[0].1 += s / p;
        if live {
            out[1].0 += 1.0 / p;
            out[1].1 += s / p;
        }
    }
    out
}

#[test]
fn pprof_output_decodes_to_the_estimates() {
    use std::io::Read;
    let dir = scratch("pprof");
    let out = dir.join("s.pb.gz");
    let o = my_alloc(&[
        "report",
        STACKS,
        "--folded",
        "--pprof",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_end(&mut raw)
        .expect("gzip");
    let profile = wire::fields(&raw);
    let strings: Vec<String> = profile
        .iter()
        .filter(|(f, _)| *f == 6)
        .map(|(_, v)| match v {
            wire::Value::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
            wire::Value::Varint(_) => panic!("a string that is a number"),
        })
        .collect();
    assert_eq!(strings[0], "");
    let s = |i: u64| strings[i as usize].as_str();
    let types: Vec<(&str, &str)> = wire::messages(&profile, 1)
        .iter()
        .map(|vt| (s(wire::number(vt, 1)), s(wire::number(vt, 2))))
        .collect();
    assert_eq!(
        types,
        vec![
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    let period_type = &wire::messages(&profile, 11)[0];
    assert_eq!(
        (
            s(wire::number(period_type, 1)),
            s(wire::number(period_type, 2))
        ),
        ("space", "bytes")
    );
    assert_eq!(wire::number(&profile, 12), 65536);
    assert_eq!(s(wire::number(&profile, 14)), "inuse_space");
    assert_eq!(wire::number(&profile, 10), 130_000_000);

    let samples = wire::messages(&profile, 2);
    let mut sums = [0u64; 4];
    for sample in &samples {
        let values = wire::numbers(sample, 2);
        assert_eq!(values.len(), 4);
        for (sum, v) in sums.iter_mut().zip(values) {
            *sum += v;
        }
    }
    let [all, live] = expected_estimates(&std::fs::read_to_string(STACKS).unwrap());
    // Each sample's values are rounded: the sums are within one per sample.
    let slack = samples.len() as f64;
    for (got, want) in sums.iter().zip([all.0, all.1, live.0, live.1]) {
        assert!(
            (*got as f64 - want).abs() <= slack,
            "{sums:?} vs {all:?} {live:?}"
        );
    }

    // Locations: ids the samples name, with lines of functions that exist.
    let functions: Vec<(u64, String)> = wire::messages(&profile, 5)
        .iter()
        .map(|f| (wire::number(f, 1), s(wire::number(f, 2)).to_string()))
        .collect();
    let locations = wire::messages(&profile, 4);
    let location_ids: Vec<u64> = locations.iter().map(|l| wire::number(l, 1)).collect();
    let mut leaf_names = Vec::new();
    for sample in &samples {
        let ids = wire::numbers(sample, 1);
        assert!(ids.iter().all(|id| location_ids.contains(id)), "{ids:?}");
        let leaf = &locations[location_ids.iter().position(|l| *l == ids[0]).unwrap()];
        let line = &wire::messages(leaf, 4)[0];
        let function = wire::number(line, 1);
        leaf_names.push(
            functions
                .iter()
                .find(|f| f.0 == function)
                .unwrap()
                .1
                .clone(),
        );
    }
    // The stacks start in the program, not in the allocator.
    for want in ["demo+0x1100", "libparse.so+0x1500", "demo+0x1400"] {
        assert!(leaf_names.iter().any(|n| n == want), "{leaf_names:?}");
    }
    assert!(leaf_names.iter().all(|n| !n.starts_with("lib my_alloc")));
    let mappings = wire::messages(&profile, 3);
    assert_eq!(mappings.len(), 5);
    // The program's own file first.
    assert_eq!(s(wire::number(&mappings[0], 5)), "/nonexistent/demo/demo");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[inline(never)]
fn flame_leaf_function(n: usize) -> Vec<u8> {
    vec![7; std::hint::black_box(n)]
}

#[inline(never)]
fn flame_middle_function(n: usize) -> Vec<u8> {
    let mut v = flame_leaf_function(n);
    v.push(1);
    v
}

#[inline(never)]
fn flame_outer_function(n: usize) -> usize {
    flame_middle_function(n).len() + flame_leaf_function(n / 2).len()
}

/// This process's executable file mappings, as M lines.
fn own_mapping_lines() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut out = String::new();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || !f[1].contains('x') || !f[5].starts_with('/') {
            continue;
        }
        let (start, end) = f[0].split_once('-').unwrap();
        out.push_str(&format!("M {start} {end} {} {}\n", f[2], f[5..].join(" ")));
    }
    out
}

#[test]
fn flame_graphs_name_the_programs_functions() {
    assert_eq!(flame_outer_function(8), 13);
    let addr = |f: fn(usize) -> Vec<u8>| f as *const () as usize as u64;
    let leaf = addr(flame_leaf_function);
    let middle = addr(flame_middle_function);
    let outer = flame_outer_function as *const () as usize as u64;
    // The innermost pc is in the leaf itself; the others are return addresses, one byte past a
    // call (here: past each function's first byte, which names the same function).
    let profile = format!(
        "my_alloc-profile 1\nprogram {}\nR 4096\n{}K 1 {leaf:x} {:x} {:x}\nK 2 {leaf:x} {:x}\n\
         A 1 1048576 1 10000\nA 2 2097152 1 20000\nA 3 65536 2 30000\nF 4 20000\nP 5\nE 6\n",
        std::env::current_exe().unwrap().display(),
        own_mapping_lines(),
        middle + 1,
        outer + 1,
        outer + 1,
    );
    let dir = scratch("flame");
    let prof = dir.join("own.prof");
    std::fs::write(&prof, profile).unwrap();
    let (peak, alloc) = (dir.join("peak.svg"), dir.join("alloc.svg"));
    let o = my_alloc(&[
        "report",
        prof.to_str().unwrap(),
        "--leaks",
        "--flame-peak",
        peak.to_str().unwrap(),
        "--flame-alloc",
        alloc.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    // DWARF gives the file and line of each frame.
    assert!(
        stdout.contains("    cli::flame_leaf_function (") && stdout.contains("cli.rs:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "top leaks:\n       1.0 MiB  cli::flame_leaf_function <- cli::flame_middle_function\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("flame (peak):  "), "{stdout}");

    for (path, title, stacks) in [
        (&peak, "Bytes in use at the peak", 3),
        (&alloc, "Bytes allocated", 3),
    ] {
        let svg = std::fs::read_to_string(path).unwrap();
        // inferno's SVG starts with a DOCTYPE.
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&svg, options)
            .expect("the flame graph is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let t = texts(&doc);
        assert!(t.contains(&title.to_string()), "{t:?}");
        let titles: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text().map(str::to_string))
            .collect();
        for name in [
            "cli::flame_leaf_function",
            "cli::flame_middle_function",
            "cli::flame_outer_function",
        ] {
            assert!(
                titles
                    .iter()
                    .any(|x| x.starts_with(&format!("{name} (")) && x.contains(" bytes")),
                "no {name} in {titles:?}"
            );
        }
        assert!(titles.len() > stacks, "{titles:?}");
    }
    // At the peak (after the third A) the 2 MiB block is live; it is gone by the end.
    let svg = std::fs::read_to_string(&peak).unwrap();
    assert!(svg.contains("3.1 MiB live at 0.003 s"), "{svg}");
    assert!(
        svg.contains("cli::flame_middle_function (3,145,728 bytes"),
        "{svg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
