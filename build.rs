//! Build script of the core: turns the build-time settings (`build/settings.rs`) into constants.
//! (The C library's own build script, `src/clib/build.rs`, sets the soname and writes the header.)

use std::env;
use std::path::PathBuf;

#[path = "build/settings.rs"]
mod settings;

fn main() {
    println!("cargo:rerun-if-changed=build/settings.rs");
    let s = settings::read_settings();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    settings::write_if_changed(
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
}
