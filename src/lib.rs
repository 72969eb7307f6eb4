//! my_alloc: a malloc replacement with a `no_std` core.
//!
//! Layers, bottom to top, as DESIGN.md lists them (each uses only the ones below it; a test
//! checks the imports against that list). See DESIGN.md for what each module does.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The exported C functions exist only in the shipped library: in the crate's own tests they
/// would replace the test harness's allocator.
#[cfg(not(test))]
pub mod api;
pub mod block;
#[cfg(not(test))]
pub mod checked;
pub mod config;
pub mod diag;
pub mod counters;
pub mod global;
pub mod lifecycle;
pub mod heap;
pub mod options;
pub mod os;
pub mod pagemap;
pub mod profile;
pub mod size_class;
pub mod size_text;
pub mod source;
pub mod stats;
pub mod sync;
pub mod tcache;
pub mod thread;

#[cfg(test)]
mod tests;

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Formatting the panic message could itself fail inside malloc; a fixed line is enough to
    // know where to look.
    os::write_stderr(b"my_alloc: internal error (panic)\n");
    os::abort()
}

/// Referenced by precompiled `core` even with `panic = "abort"`; defined so that the shared
/// library has no undefined Rust symbol at load time.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
