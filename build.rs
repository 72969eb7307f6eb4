//! Build script: turns the build-time settings into constants, sets the shared library's soname, and
//! regenerates `include/my_alloc.h` with cbindgen.
//!
//! Settings come from the environment of the build (the Makefile forwards `ALIGNMENT=…` and friends):
//! - `MY_ALLOC_ALIGNMENT`   minimum alignment of every pointer: 8, 16 (default), 32 or 64;
//! - `MY_ALLOC_NUM_CLASSES` number of segregated size classes (default 128, from 32 to 255);
//! - `MY_ALLOC_THREAD_SAFE` 1 (default) for locks and thread caches, 0 for a single-threaded build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The soname's major version: bumped when the ABI changes incompatibly.
const SONAME_MAJOR: &str = "0";

struct Settings {
    alignment: usize,
    num_classes: usize,
    thread_safe: bool,
}

fn setting(name: &str, default: usize) -> usize {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

fn read_settings() -> Settings {
    let alignment = setting("MY_ALLOC_ALIGNMENT", 16);
    assert!(
        matches!(alignment, 8 | 16 | 32 | 64),
        "MY_ALLOC_ALIGNMENT must be 8, 16, 32 or 64 (got {alignment})"
    );
    let num_classes = setting("MY_ALLOC_NUM_CLASSES", 128);
    assert!(
        (32..=255).contains(&num_classes),
        "MY_ALLOC_NUM_CLASSES must be between 32 and 255 (got {num_classes})"
    );
    let thread_safe = setting("MY_ALLOC_THREAD_SAFE", 1);
    assert!(thread_safe <= 1, "MY_ALLOC_THREAD_SAFE must be 0 or 1 (got {thread_safe})");
    Settings { alignment, num_classes, thread_safe: thread_safe == 1 }
}

fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(contents) {
        fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

fn main() {
    let s = read_settings();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    write_if_changed(
        &out.join("build_settings.rs"),
        &format!(
            "/// Minimum alignment of every pointer handed out (build setting `ALIGNMENT`).\n\
             pub const ALIGNMENT: usize = {};\n\
             /// Number of segregated size classes (build setting `NUM_CLASSES`).\n\
             pub const NUM_CLASSES: usize = {};\n\
             /// Locks and thread caches on (build setting `THREAD_SAFE`).\n\
             pub const THREAD_SAFE: bool = {};\n",
            s.alignment, s.num_classes, s.thread_safe
        ),
    );

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmy_alloc.so.{SONAME_MAJOR}");
    }

    generate_header(&s);
}

fn generate_header(s: &Settings) {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    // The library's own sources (not src/cli/, the command's crate, which does not change the
    // header).
    println!("cargo:rerun-if-changed=cbindgen.toml");
    for entry in fs::read_dir(crate_dir.join("src")).expect("src/") {
        let path = entry.expect("src/ entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let defines = format!(
        "\n/* Build-time settings this library was compiled with. */\n\
         #define MY_ALLOC_ALIGNMENT {}\n\
         #define MY_ALLOC_NUM_CLASSES {}\n\
         #define MY_ALLOC_THREAD_SAFE {}\n",
        s.alignment, s.num_classes, s.thread_safe as u8
    );
    let mut config = config;
    config.after_includes = Some(defines);
    let mut text = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate my_alloc.h")
        .write(&mut text);
    // MY_ALLOC_HEADER_DIR lets a build with other settings put its header elsewhere (the tests of
    // non-default settings do), so that the committed default header is left alone.
    println!("cargo:rerun-if-env-changed=MY_ALLOC_HEADER_DIR");
    let dir = env::var_os("MY_ALLOC_HEADER_DIR").map(PathBuf::from).unwrap_or_else(|| crate_dir.join("include"));
    write_if_changed(&dir.join("my_alloc.h"), &String::from_utf8(text).unwrap());
}
