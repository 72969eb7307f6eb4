//! The build-time settings, read from the environment of the build by both build scripts (the
//! core's, which turns them into constants, and the C library's, which writes them into the
//! header). The Makefile forwards `ALIGNMENT=…` and friends:
//! - `MY_ALLOC_ALIGNMENT`   minimum alignment of every pointer: 8, 16 (default), 32 or 64;
//! - `MY_ALLOC_NUM_CLASSES` number of segregated size classes (default 128, from 32 to 255);
//! - `MY_ALLOC_THREAD_SAFE` 1 (default) for locks and thread caches, 0 for a single-threaded build.

use std::env;
use std::fs;
use std::path::Path;

pub struct Settings {
    pub alignment: usize,
    pub num_classes: usize,
    pub thread_safe: bool,
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

pub fn read_settings() -> Settings {
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

pub fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(contents) {
        fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}
