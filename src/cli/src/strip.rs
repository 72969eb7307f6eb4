//! The allocator's own frames at the top of a sampled stack, which say nothing of the program:
//! they are dropped up to the first frame of the program's code.

/// C allocation functions, glibc's aliases of them, and Rust's allocation shims.
const NAMES: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "reallocarray",
    "memalign",
    "posix_memalign",
    "aligned_alloc",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "my_alloc",
    "call_oc",
    "reall_oc",
    "freee",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_free",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rust_dealloc",
    "__rust_no_alloc_shim_is_unstable",
    "__rdl_alloc",
    "__rdl_alloc_zeroed",
    "__rdl_realloc",
    "__rdl_dealloc",
    "__rg_alloc",
    "__rg_alloc_zeroed",
    "__rg_realloc",
    "__rg_dealloc",
];

/// Prefixes of demangled names of the allocator, of Rust's allocation paths, of the unwinder
/// (the stack walk itself) and of C++'s allocation operators.
const PREFIXES: &[&str] = &[
    "my_alloc::",
    "<my_alloc::",
    "core::",
    "<core::",
    "alloc::alloc::",
    "<alloc::alloc::",
    "std::alloc::",
    "<std::alloc::",
    "__rust_",
    "__rdl_",
    "__rg_",
    "_Unwind_",
    "operator new",
    "operator delete",
];

/// Files whose every function is the allocator's or the unwinder's.
const OBJECT_PREFIXES: &[&str] = &["libmy_alloc", "libgcc_s"];

/// Whether a frame of `function` in the file `object` (a basename) is the allocator's.
pub fn is_allocator_frame(function: &str, object: &str) -> bool {
    OBJECT_PREFIXES.iter().any(|p| object.starts_with(p))
        || NAMES.contains(&function)
        || PREFIXES.iter().any(|p| function.starts_with(p))
}

/// How many of `frames` (function and object, innermost first) to drop: the leading run of the
/// allocator's frames, unless the whole stack is the allocator's (it is then kept as it is, being
/// all there is to show).
pub fn leading_allocator_frames<'a>(frames: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    for (count, (function, object)) in frames.into_iter().enumerate() {
        if !is_allocator_frame(function, object) {
            return count;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_frames_are_told_apart() {
        for (function, object) in [
            ("malloc", "libc.so.6"),
            ("something", "libmy_alloc.so"),
            ("anything", "libmy_alloc.so.0"),
            ("_Unwind_Backtrace", "libgcc_s.so.1"),
            ("my_alloc::tcache::alloc", "demo"),
            (
                "<my_alloc::MyAlloc as core::alloc::global::GlobalAlloc>::alloc",
                "demo",
            ),
            ("alloc::alloc::exchange_malloc", "demo"),
            (
                "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
                "demo",
            ),
            ("core::ptr::drop_in_place<alloc::vec::Vec<u8>>", "demo"),
            ("std::alloc::__default_lib_allocator::__rdl_alloc", "demo"),
            ("__rust_alloc", "demo"),
            ("operator new(unsigned long)", "libstdc++.so.6"),
            ("posix_memalign", "demo"),
        ] {
            assert!(
                is_allocator_frame(function, object),
                "{function} in {object}"
            );
        }
        for (function, object) in [
            ("main", "demo"),
            ("demo::build_index", "demo"),
            ("alloc::vec::Vec<T,A>::push", "demo"),
            ("PyMem_Malloc", "python3.11"),
            ("malloc_wrapper", "demo"),
            ("demo+0x1234", "demo"),
            ("libmy_alloc.so+0x10", ""),
        ] {
            assert!(
                !is_allocator_frame(function, object),
                "{function} in {object}"
            );
        }
    }

    #[test]
    fn only_the_leading_run_is_dropped() {
        let stack = [
            ("_Unwind_Backtrace", "libgcc_s.so.1"),
            ("my_alloc::profile::sample", "libmy_alloc.so"),
            ("malloc", "libmy_alloc.so"),
            ("demo::parse", "demo"),
            // Further down, allocator-like names are the program's business.
            ("free", "demo"),
            ("main", "demo"),
        ];
        assert_eq!(leading_allocator_frames(stack), 3);
        assert_eq!(leading_allocator_frames(stack[3..].iter().copied()), 0);
        // All the allocator's: kept.
        assert_eq!(leading_allocator_frames(stack[..3].iter().copied()), 0);
        assert_eq!(leading_allocator_frames([]), 0);
    }
}
