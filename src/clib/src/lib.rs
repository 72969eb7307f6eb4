//! The C libraries, `libmy_alloc.so` and `libmy_alloc.a`: the core with its C names exported,
//! plus what a `no_std` library linked into C programs must define itself. (A Rust program
//! depends on the core, whose own crate leaves these to the program's standard library.)

#![no_std]

// The exported functions are the core's (`api.rs`); naming the crate links it in.
extern crate engine;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Formatting the panic message could itself fail inside malloc; a fixed line is enough to
    // know where to look.
    engine::os::write_stderr(b"my_alloc: internal error (panic)\n");
    engine::os::abort()
}

/// Referenced by precompiled `core` even with `panic = "abort"`; defined so that the shared
/// library has no undefined Rust symbol at load time.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
