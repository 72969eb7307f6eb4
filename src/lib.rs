//! my_alloc: a fast, checked memory allocator with a `no_std` core, for Rust programs as their
//! global allocator and for C programs as their `malloc` (`libmy_alloc.so`, built from the
//! repository).
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u64>(), 499_500);
//!     assert!(my_alloc::stats().allocations > 0);
//! }
//! ```
//!
//! With the `c-names` feature the program also exports `malloc`, `free` and the rest of the C
//! family, so that its C libraries allocate from my_alloc too. The `MY_ALLOC_*` environment
//! options (statistics at exit, checking mode, the heap profile, memory return) work as for the
//! C library; see the README.
//!
//! The crate's modules, below, are its internals (layers, bottom to top, as DESIGN.md lists
//! them; a test checks the imports against that list): only [`MyAlloc`] and the functions and
//! types beside it are its API.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The exported C names exist only with the `c-names` feature, and never in the crate's own tests
/// (they would replace the test harness's allocator).
#[cfg(all(feature = "c-names", not(test)))]
#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod block;
#[doc(hidden)]
pub mod checked;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod counters;
#[doc(hidden)]
pub mod diag;
#[cfg(not(test))]
#[doc(hidden)]
pub mod entry;
#[doc(hidden)]
pub mod global;
#[doc(hidden)]
pub mod guard;
#[doc(hidden)]
pub mod heap;
#[doc(hidden)]
pub mod lifecycle;
#[doc(hidden)]
pub mod options;
#[doc(hidden)]
pub mod os;
#[doc(hidden)]
pub mod pagemap;
#[doc(hidden)]
pub mod profile;
#[cfg(not(test))]
mod rust_api;
#[doc(hidden)]
pub mod size_class;
#[doc(hidden)]
pub mod size_text;
#[doc(hidden)]
pub mod source;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod sync;
#[doc(hidden)]
pub mod tcache;
#[doc(hidden)]
pub mod thread;
#[doc(hidden)]
pub mod unwind;

#[cfg(not(test))]
pub use rust_api::*;

#[cfg(test)]
mod tests;
