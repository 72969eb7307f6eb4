//! Build script of the C libraries: sets the shared library's soname and regenerates
//! `include/my_alloc.h` with cbindgen from the core's sources (its C surface, `src/api.rs`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../build/settings.rs"]
mod settings;

use settings::{read_settings, write_if_changed, Settings};

/// The soname's major version: bumped when the ABI changes incompatibly.
const SONAME_MAJOR: &str = "0";

fn main() {
    let s = read_settings();
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmy_alloc.so.{SONAME_MAJOR}");
    }
    let core_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    generate_header(&s, &core_dir.canonicalize().expect("the core's directory"));
}

fn generate_header(s: &Settings, core_dir: &Path) {
    println!("cargo:rerun-if-changed=../../build/settings.rs");
    println!("cargo:rerun-if-changed={}", core_dir.join("cbindgen.toml").display());
    // The core's own sources (not the command's crate or this one, which do not change the
    // header).
    for entry in fs::read_dir(core_dir.join("src")).expect("src/") {
        let path = entry.expect("src/ entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let mut config = cbindgen::Config::from_file(core_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "\n/* Build-time settings this library was compiled with. */\n\
         #define MY_ALLOC_ALIGNMENT {}\n\
         #define MY_ALLOC_NUM_CLASSES {}\n\
         #define MY_ALLOC_THREAD_SAFE {}\n",
        s.alignment, s.num_classes, s.thread_safe as u8
    ));
    let mut text = Vec::new();
    cbindgen::Builder::new()
        .with_crate(core_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate my_alloc.h")
        .write(&mut text);
    // MY_ALLOC_HEADER_DIR lets a build with other settings put its header elsewhere (the tests of
    // non-default settings do), so that the committed default header is left alone.
    println!("cargo:rerun-if-env-changed=MY_ALLOC_HEADER_DIR");
    let dir = env::var_os("MY_ALLOC_HEADER_DIR").map(PathBuf::from).unwrap_or_else(|| core_dir.join("include"));
    write_if_changed(&dir.join("my_alloc.h"), &String::from_utf8(text).unwrap());
}
